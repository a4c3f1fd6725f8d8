"""Prometheus metrics of one server instance (its own registry, so tests can run many)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .vocabulary import CancelReason, EndReason


class _KeptJournals(Protocol):
    """What `MemoryReplay` tells a scrape (no import of it here: metrics stay a leaf)."""

    ended_bytes: int
    evicted: int


class Metrics:
    """The counters, gauges and histograms `GET /metrics` exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.active_streams = Gauge(
            "jarvis_active_streams", "Streams started and not yet ended.", registry=r
        )
        self.started = Counter("jarvis_streams_started", "Streams started.", registry=r)
        self.cancelled = Counter(
            "jarvis_streams_cancelled", "Streams told to stop, by reason.", ["reason"], registry=r
        )
        self.ended = Counter(
            "jarvis_streams_ended", "Streams ended, by reason.", ["reason"], registry=r
        )
        self.cancel_wait = Histogram(
            "jarvis_cancel_wait_seconds",
            "How long a new prompt waited for its session's previous streams.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
            registry=r,
        )
        self.cleanup_timeouts = Counter(
            "jarvis_cleanup_timeouts",
            "Previous streams that overran --cancel-wait (prev_stream_timeout_on_cancel).",
            registry=r,
        )
        self.refused = Counter(
            "jarvis_requests_refused",
            "Requests refused before any stream (request_rejected), by code: session_busy "
            "(--on-busy reject), queue_timeout (--on-busy queue waited too long), "
            "registry_unavailable (a 503), or a bad request's own code.",
            ["code"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "jarvis_queue_wait_seconds",
            "How long a prompt waited for its session's answer to end (--on-busy queue).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=r,
        )
        #: Flushes by trigger, counted as plain ints on the hot path (a prometheus
        #: Counter.inc takes a lock per token) and read at scrape time.
        self.flushes: Tally[str] = Tally()
        r.register(_FlushCollector(self.flushes))
        self.loop_lag = Gauge(
            "jarvis_loop_lag_seconds", "Latest event-loop heartbeat lag.", registry=r
        )
        self.loop_blocked = Counter(
            "jarvis_loop_blocked", "Times the watchdog saw the loop blocked.", registry=r
        )
        # Pre-create labelled children so a scrape shows zeros, not absences.
        for reason in EndReason:
            self.ended.labels(reason.value)
        for cancel in CancelReason:
            self.cancelled.labels(cancel.value)
        for code in ("session_busy", "queue_timeout", "registry_unavailable"):
            self.refused.labels(code)

    def watch_replay(self, replay: _KeptJournals) -> None:
        """With resume on: what the kept journals hold and what the cap forgot, read at
        scrape time from the store itself."""
        self.registry.register(_ReplayCollector(replay))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _FlushCollector(Collector):
    """Exposes the flush tally as `jarvis_flushes_total{trigger=...}`."""

    def __init__(self, tally: Tally[str]) -> None:
        self._tally = tally

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "jarvis_flushes", "Token batches written, by trigger.", labels=["trigger"]
        )
        for trigger in ("token", "immediate", "debounce", "end", "cleanup"):
            family.add_metric([trigger], self._tally[trigger])
        yield family


class _ReplayCollector(Collector):
    """Exposes the resume store's memory: `jarvis_resume_kept_bytes` (what ended answers
    hold for a resume) and `jarvis_resume_evicted_total` (ended answers `resume_max_mb`
    forgot before their TTL: each a resume that now gets a 404 in one process)."""

    def __init__(self, replay: _KeptJournals) -> None:
        self._replay = replay

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "jarvis_resume_kept_bytes",
            "About what the ended answers kept for a resume hold (bounded by resume_max_mb).",
            value=self._replay.ended_bytes,
        )
        yield CounterMetricFamily(
            "jarvis_resume_evicted",
            "Ended answers forgotten before their resume_ttl to stay within resume_max_mb.",
            value=self._replay.evicted,
        )
