"""Everything one `jarvis serve` instance shares between requests, built from its config."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Protocol

from .. import faults
from .._guard import StreamGuard
from ..config import ServerConfig
from ..eventlog import EventLog, EventSink
from ..synthetic import SyntheticModel
from .chat import ChatRequest
from .upstream import UpstreamModel


class TokenSource(Protocol):
    """Where tokens come from: the synthetic model or an upstream server.

    `stream` must await the loop between tokens, so the producer built on it
    always yields. `on_model` is told the model name the source answers as,
    when it learns one (an upstream names its model in its chunks).
    """

    name: str

    def stream(
        self, request: ChatRequest, on_model: Callable[[str], object] | None = None
    ) -> AsyncGenerator[str, None]: ...

    async def aclose(self) -> None: ...


def _ride_out_registry_outage(guard: StreamGuard) -> None:
    """A fleet worker starts even while Redis is away, refusing prompts (503) until it is
    back: its supervisor checked Redis before starting any worker, so an absence now is
    an outage, and a worker that gave up on it would take the whole fleet down."""
    from .._redis_registry import RedisRegistry  # a worker always has a Redis registry

    if isinstance(guard.parts.registry, RedisRegistry):
        guard.parts.registry.start_down_ok = True


@dataclass(slots=True)
class ServerContext:
    """The guard, token source and log of one server."""

    config: ServerConfig
    log: EventSink
    guard: StreamGuard
    source: TokenSource

    @classmethod
    def build(cls, config: ServerConfig, log: EventSink | None = None) -> ServerContext:
        """Wire the parts together: the guard, with the faults switched on injected into it."""
        if log is None:
            log = EventLog(
                config.log_file,
                fmt=config.guard.log_format,
                max_bytes=config.log_max_bytes,
                backups=config.log_backups,
            )
        # The server's own sink, not a public LogTarget: the guard takes any event sink.
        guard = StreamGuard.from_settings(config.guard, log=log)  # type: ignore[arg-type]
        if config.worker:
            _ride_out_registry_outage(guard)
        faults.inject(guard, config.faults)
        source: TokenSource
        if config.upstream:
            source = UpstreamModel(config.upstream, api_key=config.upstream_api_key)
        else:
            source = SyntheticModel(
                token_rate=config.token_rate, first_token_ms=config.first_token_ms
            )
        return cls(config, log, guard, source)

    async def aclose(self) -> None:
        await self.source.aclose()
        if isinstance(self.log, EventLog):
            self.log.close()
