"""Event-loop watchdog: a thread that notices when the loop stops answering.

A heartbeat task on the loop stamps the time every `interval`. A thread
(which keeps running when the loop is stuck) compares that stamp with the
clock: past `threshold` it logs `loop_blocked` with the loop thread's current
stack, taken from `sys._current_frames()`, while the loop is still blocked;
`loop_recovered` when the heartbeat resumes; and a periodic `loop_lag` line.
It also watches the batcher's writes (`flushing`): a flush whose write has run
past `threshold` gets one `flush_slow` line, written from this thread, so a flush
that never returns shows in the log even when it blocks the loop (a flush's own
line is written only when its write returns). The decision logic is the pure
`check(now)`, tested with a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from .eventlog import EventSink
from .vocabulary import Event

if TYPE_CHECKING:  # prometheus_client is imported when a guard is built, not by `import jarvis`
    from ._batcher import InFlight
    from ._metrics import Metrics

_STACK_DEPTH = 12


def format_stack(frame: FrameType | None, depth: int = _STACK_DEPTH) -> str:
    """`file:line:function <- caller ...`, innermost first, file names shortened."""
    parts: list[str] = []
    while frame is not None and len(parts) < depth:
        code = frame.f_code
        path = code.co_filename
        short = os.sep.join(path.split(os.sep)[-2:])
        parts.append(f"{short}:{frame.f_lineno}:{code.co_name}")
        frame = frame.f_back
    return " <- ".join(parts)


@dataclass(slots=True)
class _Report:
    event: Event
    fields: dict[str, object]


class LoopWatchdog:
    """Watches one event loop from a separate thread."""

    def __init__(
        self,
        log: EventSink,
        *,
        threshold_s: float = 0.25,
        report_every_s: float = 10.0,
        interval_s: float = 0.05,
        metrics: Metrics | None = None,
        active_streams: Callable[[], int] = lambda: 0,
        flushing: Callable[[], Iterable[InFlight]] = tuple,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`flushing` lists the writes under way (`TokenBatcher.in_flight`), stamped
        with `clock`; it is called from the watchdog's thread."""
        self._log = log
        self._threshold = threshold_s
        self._report_every = report_every_s
        self._interval = interval_s
        self._metrics = metrics
        self._active_streams = active_streams
        self._flushing = flushing
        #: (trace, since) of the writes already reported slow, while they run.
        self._slow_reported: set[tuple[str, float]] = set()
        self._clock = clock
        self._beat = clock()
        self._blocked_since: float | None = None
        self._max_lag = 0.0
        self._next_report = self._beat + report_every_s
        self._loop_thread_id: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "blocked" if self._blocked_since is not None else "ok"
        return f"<LoopWatchdog {state} threshold={self._threshold * 1000:.0f}ms>"

    def beat(self, now: float | None = None) -> None:
        """Record that the loop answered (called by the heartbeat task)."""
        self._beat = self._clock() if now is None else now

    def check(self, now: float, stack: Callable[[], str] = lambda: "") -> list[_Report]:
        """What to log at `now`, given the last heartbeat; pure apart from its own state."""
        reports: list[_Report] = []
        lag = max(0.0, now - self._beat - self._interval)
        self._max_lag = max(self._max_lag, lag)
        if self._metrics is not None:
            self._metrics.loop_lag.set(lag)
        if lag >= self._threshold and self._blocked_since is None:
            self._blocked_since = self._beat
            if self._metrics is not None:
                self._metrics.loop_blocked.inc()
            reports.append(
                _Report(Event.LOOP_BLOCKED, {"lag_ms": round(lag * 1000), "stack": stack()})
            )
        elif lag < self._threshold and self._blocked_since is not None:
            blocked_ms = round((self._beat - self._blocked_since) * 1000)
            self._blocked_since = None
            reports.append(_Report(Event.LOOP_RECOVERED, {"blocked_ms": blocked_ms}))
        if self._report_every > 0 and now >= self._next_report:
            self._next_report = now + self._report_every
            reports.append(
                _Report(
                    Event.LOOP_LAG,
                    {
                        "lag_ms": round(lag * 1000),
                        "max_lag_ms": round(self._max_lag * 1000),
                        "active_streams": self._active_streams(),
                    },
                )
            )
            self._max_lag = 0.0
        reports += self._slow_flushes(now)
        return reports

    def _slow_flushes(self, now: float) -> list[_Report]:
        """One `flush_slow` per write under way for `threshold` or more."""
        reports: list[_Report] = []
        running: set[tuple[str, float]] = set()
        for flush in self._flushing():
            key = (flush.trace, flush.since)
            running.add(key)
            if now - flush.since >= self._threshold and key not in self._slow_reported:
                self._slow_reported.add(key)
                waited_ms = round((now - flush.since) * 1000)
                reports.append(
                    _Report(
                        Event.FLUSH_SLOW,
                        {"trace": flush.trace, "size": flush.size, "waited_ms": waited_ms},
                    )
                )
        self._slow_reported &= running  # forget the writes that returned
        return reports

    def start(self) -> None:
        """Start the heartbeat on the running loop and the watching thread."""
        self._loop_thread_id = threading.get_ident()
        self._stop = threading.Event()  # a fresh one: the same watchdog may run again
        self.beat()
        self._heartbeat = asyncio.get_running_loop().create_task(self._pulse())
        self._thread = threading.Thread(target=self._watch, name="jarvis-watchdog", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 1.0)

    async def _pulse(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(self._interval)

    def _loop_stack(self) -> str:
        if self._loop_thread_id is None:
            return ""
        return format_stack(sys._current_frames().get(self._loop_thread_id))

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            for report in self.check(self._clock(), self._loop_stack):
                self._log.emit(report.event, **report.fields)
