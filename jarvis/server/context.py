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
