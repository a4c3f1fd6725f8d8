"""An ASGI app served by uvicorn on a free 127.0.0.1 port for the length of a block: in the
running loop (`served`), or on a daemon thread with a loop of its own (`AppThread`).
Starting and each step of stopping are bounded, and the app is stopped whatever happened."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import uvicorn

from jarvis.exceptions import ServerStartError

if TYPE_CHECKING:
    from starlette.types import ASGIApp

#: How long an app may take to listen (its lifespan startup included).
STARTUP_S = 15.0
#: How long each step of stopping an app may take: graceful, forced, cancelled.
STOP_S = 5.0
#: The name of the thread (and of the task) that serves an app.
NAME = "jarvis-testing-app"


@dataclass(slots=True)
class Served:
    """Where the app listens, and what went wrong stopping it (the report fails with it)."""

    url: str
    notes: list[str] = field(default_factory=list)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # SIGINT and SIGTERM stay the test process's own


@contextlib.asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[Served]:
    """Serve `app` in this loop until the block ends."""
    config = uvicorn.Config(
        app,
        interface="asgi3",
        # Leave logging as the test process set it up, and skip importing websockets,
        # whose deprecation warnings would break suites that make warnings errors.
        log_config=None,
        ws="none",
        timeout_graceful_shutdown=int(STOP_S),
    )
    server = _Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    here = Served(f"http://127.0.0.1:{sock.getsockname()[1]}")
    task = asyncio.create_task(_serve(server, sock), name=NAME)
    try:
        await _until_started(server, task)
        yield here
    finally:
        here.notes += await _stop(server, task)
        sock.close()


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit:
        # uvicorn exits the process when the app's lifespan startup fails.
        raise ServerStartError("the app failed to start (its lifespan startup failed)") from None


async def _until_started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    try:
        async with asyncio.timeout(STARTUP_S):
            while not server.started:
                if task.done():
                    task.result()  # raises what stopped it, if anything did
                    raise ServerStartError("the app's server stopped before it listened")
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise ServerStartError(f"the app did not start within {STARTUP_S:g} s") from None


async def _stop(server: uvicorn.Server, task: asyncio.Task[None]) -> list[str]:
    """Stop gracefully, then forcibly, then cancel; what went wrong, in words."""
    server.should_exit = True
    if not await _ended(task):
        server.force_exit = True
        if not await _ended(task):
            task.cancel()
            await _ended(task)
    if not task.done():
        return [f"the app's server did not stop within {3 * STOP_S:g} s"]
    if task.cancelled() or task.exception() is None:
        return []
    return [f"the app's server failed: {task.exception()!r}"]


async def _ended(task: asyncio.Task[None]) -> bool:
    done, _ = await asyncio.wait({task}, timeout=STOP_S)
    return bool(done)


class AppThread:
    """`with AppThread(app) as url:` `served` on a daemon thread with an event loop of its
    own: the app never shares a loop with the caller's, and an app that never gives its
    loop back cannot keep the process alive."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._url: Future[str] = Future()
        self._stop: Callable[[], object] = lambda: None
        self._thread = threading.Thread(target=self._main, name=NAME, daemon=True)
        #: What went wrong stopping the app, in words.
        self.notes: list[str] = []

    def __repr__(self) -> str:
        state = "serving" if self._thread.is_alive() else "stopped"
        url = self._url.result() if self._url.done() and not self._url.exception() else "-"
        return f"<AppThread {state} {url}>"

    def __enter__(self) -> str:
        self._thread.start()
        try:
            # `served` bounds the startup itself; this bound holds when the loop is blocked.
            return self._url.result(timeout=STARTUP_S + STOP_S)
        except BaseException as exc:
            self.__exit__()
            if isinstance(exc, TimeoutError) and not self._url.done():
                raise ServerStartError(
                    f"the app did not start within {STARTUP_S + STOP_S:g} s (its event loop "
                    "is blocked?)"
                ) from None
            raise

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(RuntimeError):  # the thread's loop is closed already
            self._stop()
        bound = 3 * STOP_S + 1.0
        self._thread.join(bound)
        if self._thread.is_alive():
            self.notes.append(
                f"the app did not stop within {bound:g} s of the run's end (its event loop "
                "is blocked?); its thread is left running"
            )

    def _main(self) -> None:
        asyncio.run(self._host())

    async def _host(self) -> None:
        loop, stop = asyncio.get_running_loop(), asyncio.Event()
        self._stop = lambda: loop.call_soon_threadsafe(stop.set)
        try:
            async with served(self._app) as here:
                self._url.set_result(here.url)
                await stop.wait()
        except Exception as exc:
            if not self._url.done():
                self._url.set_exception(exc)  # __enter__ raises it
                return
            here.notes.append(f"the app's server failed: {exc!r}")
        self.notes += here.notes
