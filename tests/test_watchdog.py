"""The event-loop watchdog: decisions with a fake clock, and a real blocked loop."""

from __future__ import annotations

import asyncio
import time

from jarvis._watchdog import LoopWatchdog, format_stack
from jarvis.eventlog import RecordingLog
from jarvis.vocabulary import Event


def test_blocked_loop_is_reported_once_with_its_stack_then_recovery() -> None:
    """Heartbeat older than the threshold: one loop_blocked (with stack), then loop_recovered."""
    dog = LoopWatchdog(
        RecordingLog(), threshold_s=0.25, interval_s=0.05, report_every_s=0, clock=lambda: 0.0
    )
    dog.beat(10.0)
    assert dog.check(10.1) == []
    (blocked,) = dog.check(10.4, stack=lambda: "faults.py:60:blocking_flush")
    assert blocked.event is Event.LOOP_BLOCKED
    assert blocked.fields == {"lag_ms": 350, "stack": "faults.py:60:blocking_flush"}
    assert "blocked" in repr(dog)
    assert dog.check(11.0) == [], "reported once per stall, not every tick"
    dog.beat(11.2)
    (recovered,) = dog.check(11.21)
    assert recovered.event is Event.LOOP_RECOVERED
    assert recovered.fields == {"blocked_ms": 1200}


def test_periodic_loop_lag_reports_the_worst_lag_since_the_last_line() -> None:
    """loop_lag every report_every_s with current and max lag, and the active stream count."""
    dog = LoopWatchdog(
        RecordingLog(),
        threshold_s=10.0,
        interval_s=0.05,
        report_every_s=5.0,
        active_streams=lambda: 3,
        clock=lambda: 0.0,
    )
    dog.beat(0.0)
    assert dog.check(0.2) == []  # lag 150 ms, below threshold, before the first report
    dog.beat(1.0)
    (lag,) = dog.check(5.0 + 0.06)
    assert lag.event is Event.LOOP_LAG
    assert lag.fields["max_lag_ms"] == 4010
    assert lag.fields["active_streams"] == 3


async def test_real_blocked_loop_is_seen_from_the_thread_with_the_blocking_frame() -> None:
    """time.sleep on the loop: the watchdog thread logs loop_blocked naming this function."""
    log = RecordingLog()
    dog = LoopWatchdog(log, threshold_s=0.1, interval_s=0.02, report_every_s=0)
    dog.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.4)
        await asyncio.sleep(0.1)
    finally:
        await dog.stop()
    blocked = log.of(Event.LOOP_BLOCKED)
    assert len(blocked) == 1
    assert "test_real_blocked_loop_is_seen_from_the_thread" in str(blocked[0]["stack"])
    assert log.of(Event.LOOP_RECOVERED)


def test_format_stack_is_innermost_first() -> None:
    """The stack string starts at the current frame and walks outwards."""
    import sys

    stack = format_stack(sys._getframe())
    assert stack.split(" <- ")[0].endswith(":test_format_stack_is_innermost_first")


def test_a_flush_that_does_not_return_is_reported_slow_once_while_it_runs() -> None:
    """A write under way for the threshold or more: one flush_slow (its trace, size and
    how long so far), written from the watchdog's side, even while the loop is stuck;
    not again while it runs, and a later flush of the stream is a new one."""
    from jarvis._batcher import InFlight

    writes = [InFlight("t1", 40, 10.0)]
    dog = LoopWatchdog(
        RecordingLog(),
        threshold_s=0.25,
        interval_s=0.05,
        report_every_s=0,
        flushing=lambda: writes,
        clock=lambda: 0.0,
    )

    def check(now: float):
        dog.beat(now)  # the loop answers: only the write is slow
        return dog.check(now)

    assert check(10.2) == []
    (slow,) = check(10.3)
    assert slow.event is Event.FLUSH_SLOW
    assert slow.fields == {"trace": "t1", "size": 40, "waited_ms": 300}
    assert check(10.6) == [], "once per flush"
    writes[:] = [InFlight("t1", 8, 11.0)]
    assert check(11.1) == []
    assert [r.fields["waited_ms"] for r in check(11.3)] == [300]
