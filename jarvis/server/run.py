"""Run the app on uvicorn, with a shutdown that ends open streams on purpose.

uvicorn alone waits for open streams forever (or cuts them at
`--timeout-graceful-shutdown` without a word). Here shutdown first cancels
every live stream with `reason=shutdown`, so each client gets a terminal
chunk and `[DONE]`, waits for them (bounded), then lets uvicorn finish.
"""

from __future__ import annotations

import faulthandler
import math
import os
import signal
import socket
from collections.abc import Callable

import uvicorn

from .. import __version__
from ..config import ServerConfig
from ..eventlog import EventLog
from ..exceptions import ConfigError, ServerStartError
from ..logfile import install_sighup_reopen
from ..vocabulary import Event
from .app import create_app
from .context import ServerContext


class JarvisServer(uvicorn.Server):
    """uvicorn's server, plus `server_start` with the bound port and stream-aware shutdown."""

    def __init__(self, config: ServerConfig, ctx: ServerContext | None = None) -> None:
        self.jarvis_config = config
        self.ctx = ctx or ServerContext.build(config)
        app = create_app(ctx=self.ctx)
        super().__init__(
            uvicorn.Config(
                app,
                host=config.host,
                port=config.port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=max(1, math.ceil(config.guard.shutdown_timeout / 2)),
                # A chat server's keep-alive connections must not outlive shutdown.
                timeout_keep_alive=5,
            )
        )
        self.bound_port: int | None = None
        #: Called with the bound port once the server listens.
        self.on_ready: Callable[[int], None] | None = None
        #: Seconds the graceful shutdown may take: `--shutdown-timeout`, or less once
        #: `request_shutdown` asked for less (a worker whose supervisor died).
        self.shutdown_timeout = config.guard.shutdown_timeout

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit:
            return
        for server in self.servers:
            for sock in server.sockets:
                self.bound_port = sock.getsockname()[1]
                break
        cfg = self.jarvis_config
        guard = cfg.guard
        self.ctx.log.emit(
            Event.SERVER_START,
            version=__version__,
            host=cfg.host,
            port=self.bound_port,
            pid=os.getpid(),
            source=self.ctx.source.name,
            log_format=guard.log_format,
            cancel_wait_ms=int(guard.cancel_wait * 1000),
            flush_ms=guard.flush_ms,
            flush_bytes=guard.flush_bytes,
            faults=",".join(sorted(f.value for f in cfg.faults)) or "none",
            registry=guard.registry or "memory",
            worker=cfg.worker,
            on_busy=guard.on_busy,
            resume_ttl_ms=math.ceil(guard.resume_ttl * 1000),  # 0 only when off
            ping_ms=math.ceil(guard.ping * 1000),
        )
        if self.on_ready is not None and self.bound_port is not None:
            self.on_ready(self.bound_port)

    def request_shutdown(self, within_s: float) -> None:
        """Begin the shutdown SIGTERM begins, bounded by `within_s` if that is shorter.

        Callable from any thread, as uvicorn's own signal handler is: it only sets
        what the loop reads at its next tick (every 0.1 s).
        """
        self.shutdown_timeout = min(self.shutdown_timeout, within_s)
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting first, so no stream starts during shutdown
        half = self.shutdown_timeout / 2
        remaining = await self.ctx.guard.shutdown(half)
        self.ctx.log.emit(Event.SERVER_STOP, open_streams=remaining)
        # uvicorn then waits for the connections, the other half (whole seconds: its type).
        self.config.timeout_graceful_shutdown = max(1, math.ceil(half))
        await super().shutdown(sockets)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so a taken port is a clear error, not exit(1)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServerStartError(f"cannot resolve --host {host!r}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ServerStartError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def check_registry(url: str, timeout_s: float = 2.0) -> None:
    """Before serving: the shared registry must answer, or the server does not start."""
    try:
        import redis
        from redis.exceptions import RedisError
    except ModuleNotFoundError:
        raise ConfigError(
            "--registry needs the redis client, the fleet extra: "
            "pip install 'jarvis-streamkit[fleet]'"
        ) from None

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        raise ServerStartError(f"cannot reach --registry {url}: {exc}") from exc
    finally:
        client.close()


def serve(
    config: ServerConfig, on_ready: Callable[[int], None] | None = None
) -> JarvisServer | int:
    """Bind, run until SIGINT/SIGTERM, and return the server (or, with `--workers`, the
    fleet's exit code).

    SIGUSR1 dumps every thread's stack to stderr (faulthandler, from C, so it
    answers even when the event loop is dead-locked): `verify-hang` uses it to
    show where a hung server is stuck without needing py-spy. SIGHUP reopens
    the log file, for logrotate's move-then-HUP.
    """
    if config.guard.registry is not None:
        check_registry(config.guard.registry)
    sock = bind_socket(config.host, config.port)
    if config.workers > 1:
        from .fleet import run_fleet

        try:
            return run_fleet(config, sock, on_ready)
        finally:
            sock.close()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    server = JarvisServer(config)
    if isinstance(server.ctx.log, EventLog):
        install_sighup_reopen(server.ctx.log)
    server.on_ready = on_ready
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return server
