"""The rules: one function per finding id (`findings.FindingId`, same name), each
saying whether what the log showed is that fault, in words and with the lines to prove it.

A rule reads stream records and counts, and returns a `Finding` or None; it changes
nothing. The handlers (`streams.py`) ask as events arrive, the analyzer at the end of
the input. Where a rule is asked at several moments (a stream's end, a restart, the
end of the input), a keyword says which. Its lines are listed as found, with None for
what the log lacks; `CappedFindings` puts them in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .findings import Finding, FindingId

if TYPE_CHECKING:  # the handlers in streams.py call the rules: no import back at run time
    from .fleet import Outage
    from .stats import Percentiles
    from .streams import StreamRecord

__all__ = [
    "cancel_ignored",
    "cancel_timeouts",
    "cleanup_incomplete",
    "concurrent_streams",
    "flush_stuck",
    "flush_task_leak",
    "loop_blocked",
    "no_batching",
    "registry_unavailable",
    "slow_cancels",
    "stream_not_ended",
    "streams_open",
]

#: How long a cancelled stream may take to end once its successor started, when the log
#: does not say (jarvis's `server_start cancel_wait_ms`): the original fix's 2 s.
DEFAULT_CANCEL_WAIT_S = 2.0
#: Flushes a healthy stream may still start after its cancel: one timer flush that was
#: already due, and the cleanup flush of what was left.
POST_CANCEL_FLUSH_ALLOWANCE = 2
#: A flush_start this old with no flush_done at the end of the input is stuck.
FLUSH_STUCK_AFTER_S = 1.0
#: Flushes enough to say that batching is off when none carried several tokens.
NO_BATCHING_MIN_FLUSHES = 20
#: How many cancel timeouts the cancel_timeouts finding quotes (and slow cancels theirs).
TIMEOUTS_QUOTED = 5
#: A cancel wait this share of the cancel bound or more is slow (a timeout is 1.0).
SLOW_CANCEL_SHARE = 0.5
#: How many open streams the streams_open finding lists as evidence.
OPEN_QUOTED = 20


def _finding(
    finding_id: FindingId,
    message: str,
    refs: Iterable[int | None],
    record: StreamRecord | None = None,
) -> Finding:
    return Finding(
        finding_id,
        message,
        session=record.session if record else None,
        trace=record.trace if record else None,
        refs=[ref for ref in refs if ref is not None],
    )


def _stale(open_for_s: float | None, stale_after_s: float | None) -> bool:
    return open_for_s is not None and stale_after_s is not None and open_for_s > stale_after_s


def blocked_frame(fields: dict[str, str]) -> str:
    """The innermost frame of a `loop_blocked` line's stack: where the loop is stuck."""
    return fields.get("stack", "?").split(" <- ")[0] or "?"


def loop_blocked(fields: dict[str, str], ref: int) -> Finding:
    """The watchdog saw the event loop stop answering (a `loop_blocked` line)."""
    return _finding(
        FindingId.LOOP_BLOCKED,
        f"the event loop did not answer for {fields.get('lag_ms', '?')} ms; stuck in: "
        f"{blocked_frame(fields)}",
        [ref],
    )


def flush_stuck(
    rid: bytes,
    started: int,
    *,
    record: StreamRecord | None = None,
    ended: int | None = None,
    open_for_s: float | None = None,
    loop_stuck: bool = False,
) -> Finding | None:
    """A flush began and never finished: a flush_start (at `started`) with no flush_done,
    or a flush_slow (the watchdog saw its write under way) with no flush line after
    it. Its stream `ended` first, or at the end of the input it has waited
    FLUSH_STUCK_AFTER_S (`open_for_s`; None: no time to tell) or its process's loop is
    stuck."""
    if ended is not None and record is not None:
        return _finding(
            FindingId.FLUSH_STUCK,
            f"{record.label} ended with a flush that began (flush_start, flush_slow) and "
            "never finished",
            [started, ended],
            record,
        )
    old = open_for_s is None or open_for_s >= FLUSH_STUCK_AFTER_S
    if not (old or loop_stuck):
        return None
    return _finding(
        FindingId.FLUSH_STUCK,
        f"a flush of {rid.decode(errors='replace')} began (flush_start, flush_slow) and "
        "never finished",
        [started],
        record,
    )


def stream_not_ended(
    record: StreamRecord,
    *,
    restarted: int | None = None,
    open_for_s: float | None = None,
    stale_after_s: float | None = None,
) -> Finding | None:
    """A stream never reached its stream_end: its process `restarted` first, or at the end
    of the input it has been open more than `stale_after_s`. A cancelled one is
    `cancel_ignored`'s."""
    if restarted is not None:
        return _finding(
            FindingId.STREAM_NOT_ENDED,
            f"{record.label} never ended before the server restarted",
            [record.start, restarted],
            record,
        )
    if record.cancelled is not None or not _stale(open_for_s, stale_after_s):
        return None
    return _finding(
        FindingId.STREAM_NOT_ENDED,
        f"{record.label} open for {open_for_s:.1f} s with no stream_end",
        [record.start, record.cancelled, record.first_emit],
        record,
    )


def streams_open(
    records: list[StreamRecord], *, now: float | None, stale_after_s: float
) -> Finding | None:
    """Streams with a stream_start and no stream_end at the end of the input that no
    other rule took (none is older than `stale_after_s`, none was cancelled and left
    running): still streaming when the log was read, or the start of a hang. A warning
    with the count, the first OPEN_QUOTED listed."""
    if not records:
        return None
    ages = [now - r.start_ts for r in records if now is not None and r.start_ts is not None]
    span = f", open {min(ages):.1f} to {max(ages):.1f} s" if ages else ""
    named = ", ".join(r.trace for r in records[:5]) + (", …" if len(records) > 5 else "")
    return _finding(
        FindingId.STREAMS_OPEN,
        f"{len(records)} stream(s) started and have no stream_end when the log ends{span} "
        f"({named}); under --stale-after ({stale_after_s:g} s) they may still be running",
        [r.start for r in records[:OPEN_QUOTED]],
    )


def concurrent_streams(
    older: StreamRecord,
    newer: StreamRecord,
    *,
    across: Callable[[int | None, int | None], str],
    emitted: int | None = None,
    ended: int | None = None,
    ended_ts: float | None = None,
    ts_at: Callable[[int], float | None] | None = None,
    cancel_wait_s: float = DEFAULT_CANCEL_WAIT_S,
) -> Finding | None:
    """Two streams of a session ran side by side: `newer` wrote to its client (its first
    flush, `emitted`) while `older` was open; or, judged when `older` `ended` in a log
    without either one's flushes, it ran on after `newer` started.

    Healthy is the supersede: `older` fenced off, or seen to finish by the registry
    (`released`), or cancelled and ended within `cancel_wait_s` of `newer`'s start (or no
    times to say otherwise). `across` says what it means that their lines came from
    two processes; `ts_at` reads the end's time when the line's was not parsed.
    """
    if older.fenced or older.released:
        return None
    if emitted is not None:
        return _finding(
            FindingId.CONCURRENT_STREAMS,
            f"session {newer.session}: stream {newer.trace} emitted while the "
            f"older stream {older.trace} was still open and not fenced"
            + across(older.start, newer.start),
            [older.start, older.first_emit, newer.start, emitted],
            newer,
        )
    if ended is None or older.overlap_reported:
        return None
    if older.first_emit is not None or newer.first_emit is not None:
        return None  # their flushes are in the log: the first emit judges, more exactly
    since = newer.start_ts
    if ended_ts is None and ts_at is not None:
        ended_ts = ts_at(ended)
    overlap = None if ended_ts is None or since is None else ended_ts - since
    if older.cancelled is not None:
        if overlap is None or overlap <= cancel_wait_s:
            return None
        detail = (
            f"was cancelled but ended {overlap:.1f} s after the newer stream {newer.trace} "
            f"started, past the {cancel_wait_s:g} s cancel wait"
        )
    else:
        detail = f"was never cancelled and ran on after the newer stream {newer.trace} started"
        if overlap is not None:
            detail += f" ({overlap:.1f} s side by side)"
        detail += across(older.start, newer.start)
    return _finding(
        FindingId.CONCURRENT_STREAMS,
        f"session {older.session}: stream {older.trace} {detail}",
        [older.start, newer.start, ended],
        older,
    )


def cancel_ignored(
    record: StreamRecord,
    *,
    ended: int | None = None,
    open_for_s: float | None = None,
    stale_after_s: float | None = None,
) -> Finding | None:
    """A cancelled stream went on: it started more than POST_CANCEL_FLUSH_ALLOWANCE
    flushes after its cancel (by its end, `ended`, or the end of the input), or at the
    end of the input it has been open more than `stale_after_s`."""
    if record.cancelled is None:
        return None
    if record.post_cancel_flushes > POST_CANCEL_FLUSH_ALLOWANCE:
        return _finding(
            FindingId.CANCEL_IGNORED,
            f"{record.label} started {record.post_cancel_flushes} more flushes after "
            "stream_cancelled",
            [record.cancelled, record.last_post_cancel_flush, ended],
            record,
        )
    if not _stale(open_for_s, stale_after_s):
        return None
    return _finding(
        FindingId.CANCEL_IGNORED,
        f"{record.label} was cancelled and never ended",
        [record.start, record.cancelled, record.first_emit],
        record,
    )


def cancel_timeouts(
    timeouts: int, waits: Percentiles, quoted: Iterable[int], frames: Iterable[str] = ()
) -> Finding | None:
    """New prompts timed out waiting for the previous stream's cleanup (`timeouts` of
    them; `quoted`: the first few lines; `frames`: where the watchdog saw the loop stuck
    while they waited, when it did)."""
    if not timeouts:
        return None
    return _finding(
        FindingId.CANCEL_TIMEOUTS,
        f"{timeouts} new prompt(s) timed out waiting for the previous "
        f"stream's cleanup (waited p50 {waits.quantile(0.5):.0f} ms, "
        f"max {waits.max:.0f} ms)" + _blocked_in(frames),
        quoted,
    )


def slow_cancels(
    slow: int, max_ms: int, cancel_wait_s: float, quoted: Iterable[int], frames: Iterable[str] = ()
) -> Finding | None:
    """New prompts waited SLOW_CANCEL_SHARE of the cancel wait or more for the previous
    stream's cleanup, and got it in time (`slow` of them; `quoted`: the first few
    lines; `frames`: where the watchdog saw the loop stuck meanwhile)."""
    if not slow:
        return None
    return _finding(
        FindingId.SLOW_CANCELS,
        f"{slow} new prompt(s) waited {SLOW_CANCEL_SHARE * cancel_wait_s * 1000:.0f} ms or "
        f"more (max {max_ms} ms) for the previous stream's cleanup, within the "
        f"{cancel_wait_s:g} s cancel wait" + _blocked_in(frames),
        quoted,
    )


def _blocked_in(frames: Iterable[str]) -> str:
    named = list(dict.fromkeys(frames))
    if not named:
        return ""
    return "; meanwhile the watchdog saw the event loop stuck in: " + ", ".join(named[:3])


def cleanup_incomplete(
    record: StreamRecord,
    ended: int,
    *,
    cleanup_done: str | None = None,
    missing_done: bool = False,
    missing_cleaned: bool = False,
    others_done: bool = False,
    others_cleaned: bool = False,
) -> Finding | None:
    """A stream ended without its cleanup: its stream_end says `cleanup_done` and not
    True; or, judged at the end of the input, it lacks cleanup_done=True
    (`missing_done`) or event_buffers_cleaned (`missing_cleaned`) that the log records
    for other streams (`others_done`, `others_cleaned`). A log that records neither
    cannot fail a stream for lacking it."""
    if cleanup_done is not None and cleanup_done != "True":
        return _finding(
            FindingId.CLEANUP_INCOMPLETE,
            f"{record.label} ended without cleanup_done=True (cleanup_done={cleanup_done})",
            [record.start, ended],
            record,
        )
    missing = [
        name
        for name, lacks in (
            ("cleanup_done=True", missing_done and others_done),
            ("event_buffers_cleaned", missing_cleaned and others_cleaned),
        )
        if lacks
    ]
    if not missing:
        return None
    return _finding(
        FindingId.CLEANUP_INCOMPLETE,
        f"{record.label} ended without {' nor '.join(missing)}",
        [record.start, ended],
        record,
    )


def flush_task_leak(record: StreamRecord, scheduled: int, ended: int) -> Finding:
    """A stream ended with a flush still scheduled (at `scheduled`), never run nor cancelled."""
    return _finding(
        FindingId.FLUSH_TASK_LEAK,
        f"{record.label} ended with a scheduled flush never run nor cancelled",
        [scheduled, ended],
        record,
    )


def no_batching(
    flushes: int, scheduled: int, multi_token_flushes: int, flush_ms: float | None = None
) -> Finding | None:
    """Tokens went one per flush, and no flush was ever scheduled: batching is off. A
    server_start that names a debounce window (`flush_ms` > 0) says batching is on: a
    model slower than the window sends one token a flush through it."""
    if flushes < NO_BATCHING_MIN_FLUSHES or scheduled or multi_token_flushes:
        return None
    if flush_ms is not None and flush_ms > 0:
        return None
    return _finding(
        FindingId.NO_BATCHING,
        f"{flushes} flushes, every one of a single token, and no flush_scheduled",
        [],
    )


def registry_unavailable(
    registry: str,
    outage: Outage | None,
    *,
    recovered: int | None = None,
    down_ms: str | None = None,
    restarted: int | None = None,
    down_s: float | None = None,
) -> Finding:
    """The shared registry (`registry`: how to name it) stopped answering a process: until
    it `recovered` (after `down_ms`, as the line says), until the process `restarted`, or
    still at the end of the input (`down_s` after the outage's first line, if known).
    Only a recovery may come without its `outage`: the log began during it."""
    if recovered is not None:
        length = f" for {down_ms} ms" if down_ms else ""
        what = f"{registry} was unreachable{length}, then recovered"
        if outage is None:
            return _finding(
                FindingId.REGISTRY_UNAVAILABLE, what + " (down since before the log)", [recovered]
            )
        return _finding(
            FindingId.REGISTRY_UNAVAILABLE,
            f"{what}: {outage.summary()}",
            [outage.first, outage.first_refused, outage.last, recovered],
        )
    if outage is None:
        raise ValueError("an outage that did not recover is judged with its Outage")
    if restarted is not None:
        return _finding(
            FindingId.REGISTRY_UNAVAILABLE,
            f"{registry} stopped answering and had not recovered when "
            f"the process restarted: {outage.summary()}",
            [outage.first, outage.first_refused, outage.last, restarted],
        )
    length = "" if down_s is None else f", {down_s:.1f} s after"
    return _finding(
        FindingId.REGISTRY_UNAVAILABLE,
        f"{registry} stopped answering and had not recovered by "
        f"the end of the log (no registry_recovered{length}): {outage.summary()}",
        [outage.first, outage.first_refused, outage.last],
    )
