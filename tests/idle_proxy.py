"""A TCP proxy that cuts idle connections, as nginx's `proxy_read_timeout` or a load
balancer's idle timeout does: a connection that carries no byte either way for `idle_s`
is closed on both sides. It runs in the test's own event loop, on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator


class IdleCuttingProxy:
    """Forwards 127.0.0.1:`port` to `upstream`; `cuts` counts connections it cut."""

    def __init__(self, upstream: tuple[str, int], idle_s: float) -> None:
        self.upstream = upstream
        self.idle_s = idle_s
        self.cuts = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[float]
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                seen[0] = time.monotonic()
                writer.write(data)
                await writer.drain()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self.upstream)
        seen = [time.monotonic()]  # the last byte either way
        pipes = {
            asyncio.create_task(self._pipe(client_r, server_w, seen)),
            asyncio.create_task(self._pipe(server_r, client_w, seen)),
        }
        try:
            while not all(p.done() for p in pipes):
                idle = time.monotonic() - seen[0]
                if idle >= self.idle_s:
                    self.cuts += 1
                    break
                await asyncio.wait(pipes, timeout=self.idle_s - idle)
                if any(p.done() for p in pipes):
                    break  # one side closed: the exchange is over
        finally:
            for pipe in pipes:
                pipe.cancel()
            for writer in (client_w, server_w):
                writer.close()
            await asyncio.wait(pipes, timeout=1)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[IdleCuttingProxy]:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()
