"""Everything one server instance shares between requests, built from its config."""

from __future__ import annotations

from dataclasses import dataclass

from .config import ServerConfig
from .eventlog import EventLog, EventSink
from .events import TokenBatcher
from .faults import Fault
from .metrics import Metrics
from .registry import StreamRegistry
from .sse import SendWatch
from .synthetic import SyntheticModel
from .types import TokenSource
from .upstream import UpstreamModel


@dataclass(slots=True)
class ServerContext:
    """The registry, batcher, token source, log and metrics of one server."""

    config: ServerConfig
    log: EventSink
    metrics: Metrics
    registry: StreamRegistry
    batcher: TokenBatcher
    source: TokenSource
    send_watch: SendWatch

    @classmethod
    def build(cls, config: ServerConfig, log: EventSink | None = None) -> ServerContext:
        """Wire the parts together; faults switch off exactly what would hide them."""
        if log is None:
            log = EventLog(config.log_file, fmt=config.log_format)  # type: ignore[arg-type]
        metrics = Metrics()
        registry = StreamRegistry(
            log,
            cancel_wait=config.cancel_wait,
            metrics=metrics,
            cancel_previous=not config.has(Fault.NO_CANCEL),
            fence=not config.has(Fault.IGNORE_CANCEL),
        )
        batcher = TokenBatcher(
            log,
            flush_ms=config.flush_ms,
            flush_bytes=config.flush_bytes,
            metrics=metrics,
            blocking=config.has(Fault.BLOCKING_FLUSH),
        )
        source: TokenSource
        if config.upstream:
            source = UpstreamModel(config.upstream, api_key=config.upstream_api_key)
        else:
            source = SyntheticModel(
                token_rate=config.token_rate, first_token_ms=config.first_token_ms
            )
        return cls(config, log, metrics, registry, batcher, source, SendWatch(config.send_timeout))

    async def aclose(self) -> None:
        await self.source.aclose()
        if isinstance(self.log, EventLog):
            self.log.close()
