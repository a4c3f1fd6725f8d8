"""What a log counts up to (`Stats`), and the bounded-memory percentiles it keeps of
durations: a log-bucket histogram accurate to about 1%."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .flushes import FlushState

_GROWTH = math.log(1.02)


class Percentiles:
    """Counts values into buckets 2% wide, so memory does not grow with the input."""

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0
        self.max = 0.0

    def add(self, value: float) -> None:
        if not value > 0.0:  # negatives and NaN count as 0, as max(0.0, value) did
            value = 0.0
        self._buckets[int(math.log1p(value) / _GROWTH)] += 1
        self.count += 1
        self.max = max(self.max, value)

    def quantile(self, q: float) -> float:
        """The value at quantile `q` (0..1), to bucket precision; 0 when empty."""
        if not self.count:
            return 0.0
        rank = q * (self.count - 1)
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen > rank:
                return min(self.max, math.expm1((bucket + 0.5) * _GROWTH))
        return self.max

    def summary(self) -> dict[str, float]:
        return {
            "count": self.count,
            "p50": round(self.quantile(0.5), 1),
            "p99": round(self.quantile(0.99), 1),
            "max": round(self.max, 1),
        }


@dataclass(slots=True)
class Stats:
    """The counts the report shows and the decision tree reads. The flush lines' counts
    are the hot loop's own (`FlushState`, which the C loop writes): read through it."""

    flush: FlushState
    streams: int = 0
    ended: Counter[str] = field(default_factory=Counter)
    cancels: int = 0
    durations_ms: Percentiles = field(default_factory=Percentiles)
    cancel_wait_ms: Percentiles = field(default_factory=Percentiles)
    #: Cancel waits logged (prev_stream_finished_cleanly, prev_stream_timeout_on_cancel).
    cancel_waits: int = 0
    cancel_timeouts: int = 0
    loop_blocked: int = 0
    max_loop_lag_ms: int = 0
    rejected: int = 0
    #: Watchdog lines and server starts seen: without any, the loop cannot be judged.
    watchdog_lines: int = 0
    #: Streams whose stream_start named a session: without any, overlap cannot be judged.
    sessioned_streams: int = 0
    #: stream_end lines with a cleanup_done field, and event_buffers_cleaned lines: the
    #: cleanup check applies only to logs that record cleanup at all.
    cleanup_recorded: int = 0
    buffers_cleaned: int = 0
    #: registry_unavailable lines, outages that ended (registry_recovered), and prompts
    #: refused with a 503 because the registry was down.
    registry_failures: int = 0
    registry_outages: int = 0
    registry_refused: int = 0
    #: Prompts a busy session refused with 409 (`--on-busy reject`, or a queue wait that
    #: ran out): the policy at work, not an error.
    busy_rejected: int = 0
    #: Prompts that waited for their session (`stream_queued`), and how long.
    queued: int = 0
    queue_wait_ms: Percentiles = field(default_factory=Percentiles)
    #: The debounce window a jarvis server_start names (`flush_ms`), None when none does.
    flush_ms: float | None = None

    @property
    def flushes(self) -> int:
        return self.flush.flushes

    @property
    def scheduled(self) -> int:
        return self.flush.scheduled

    @property
    def multi_token_flushes(self) -> int:
        return self.flush.multi_token_flushes

    @property
    def tokens(self) -> int:
        return self.flush.tokens

    def to_json(self) -> dict[str, object]:
        return {
            "streams": self.streams,
            "ended": dict(self.ended),
            "cancels": self.cancels,
            "flushes": self.flushes,
            "scheduled_flushes": self.scheduled,
            "multi_token_flushes": self.multi_token_flushes,
            "tokens": self.tokens,
            "duration_ms": self.durations_ms.summary(),
            "cancel_wait_ms": self.cancel_wait_ms.summary(),
            "cancel_timeouts": self.cancel_timeouts,
            "loop_blocked": self.loop_blocked,
            "max_loop_lag_ms": self.max_loop_lag_ms,
            "rejected_requests": self.rejected,
            "cleanup_recorded": self.cleanup_recorded,
            "registry_failures": self.registry_failures,
            "registry_outages": self.registry_outages,
            "registry_refused": self.registry_refused,
            "busy_rejected": self.busy_rejected,
            "queued": self.queued,
            "queue_wait_ms": self.queue_wait_ms.summary(),
        }
