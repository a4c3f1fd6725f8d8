"""Small hand-built logs, one per finding and per healthy shape, for the diagnose tests."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jarvis.logfmt import format_logfmt


class LogBuilder:
    """Writes jarvis-style logfmt (or JSON) lines with a controllable clock."""

    def __init__(self, start: float = 1795317000.0) -> None:
        self.t = start
        self.lines: list[str] = []
        self.records: list[dict[str, object]] = []

    def at(self, seconds: float) -> LogBuilder:
        self.t += seconds
        return self

    def emit(self, event: str, level: str = "info", **fields: object) -> LogBuilder:
        import time as _time

        stamp = _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(self.t))
        stamp += f".{int((self.t % 1) * 1e6):06d}Z"
        self.lines.append(format_logfmt(stamp, level, event, fields))
        self.records.append({"ts": stamp, "level": level, "event": event, **fields})
        self.t += 0.001
        return self

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def json_text(self) -> str:
        return "\n".join(json.dumps(r) for r in self.records) + "\n"

    # -- building blocks ------------------------------------------------------

    def start(self, n: int, session: str) -> LogBuilder:
        return self.emit("stream_start", trace=f"t{n}", session=session, stream_id=f"r{n}",
                         model="m", prompt_chars=5).emit(
            "stream_registered", trace=f"t{n}", session=session, stream_id=f"r{n}",
            generation=1)  # fmt: skip

    def flush(
        self, n: int, tokens: int = 4, scheduled: bool = True, one_line: bool = False
    ) -> LogBuilder:
        """One flush: jarvis's one line (`one_line`), or an older server's two or three."""
        if one_line:
            return self.emit("flush", trace=f"t{n}", tokens=tokens)
        if scheduled:
            self.emit("flush_scheduled", request_id=f"r{n}", delay_ms=75)
        return self.emit("flush_start", request_id=f"r{n}", size=20).emit(
            "flush_done", request_id=f"r{n}", tokens_sent=tokens, size=20
        )

    def cleanup(self, n: int, session: str, reason: str = "completed", done: bool = True,
                cleaned: bool = True) -> LogBuilder:  # fmt: skip
        self.emit("cleanup_buffer", request_id=f"r{n}")
        if cleaned:
            self.emit("event_buffers_cleaned", trace=f"t{n}", request_id=f"r{n}")
        return self.emit("stream_end", trace=f"t{n}", session=session, stream_id=f"r{n}",
                         duration_ms=300, reason=reason, tokens=8, cleanup_done=done)  # fmt: skip

    def cancel(self, n: int, session: str) -> LogBuilder:
        return self.emit("stream_cancelled", trace=f"t{n}", session=session, stream_id=f"r{n}",
                         reason="registry_new_stream")  # fmt: skip


def healthy_supersede() -> LogBuilder:
    """A then B in one session, B's stream_start logged before A's end."""
    log = LogBuilder().emit("server_start", version="0", host="h", port=1, pid=1, source="s",
                            log_format="logfmt", cancel_wait_ms=2000, flush_ms=75,
                            flush_bytes=1024, faults="none")  # fmt: skip
    log.start(1, "s1").flush(1).flush(1)
    log.emit("flush_scheduled", request_id="r1", delay_ms=75)
    log.emit("stream_start", trace="t2", session="s1", stream_id="r2", model="m", prompt_chars=3)
    log.cancel(1, "s1")
    log.emit("cleanup_flush_task", request_id="r1").emit("flush_cancelled", request_id="r1")
    log.emit("flush_on_cleanup", request_id="r1", size=9).flush(1, scheduled=False)
    log.cleanup(1, "s1", reason="superseded")
    log.emit("prev_stream_finished_cleanly", session="s1", trace="t2", prev_trace="t1",
             waited_ms=3)  # fmt: skip
    log.emit("stream_registered", trace="t2", session="s1", stream_id="r2", generation=2)
    log.flush(2).flush(2)
    return log.cleanup(2, "s1")


#: A then B in the original server's bare lines: no timestamps, B's stream_start before
#: A's cancel and end, and trailing `← ...` notes on some lines.
BARE_SUPERSEDE_ANNOTATED = """\
stream_start trace=A stream_id=req-1
flush_scheduled request_id=req-1
flush_start request_id=req-1
flush_done request_id=req-1

stream_start trace=B stream_id=req-2  ← NEW REQUEST
stream_cancelled trace=A  ← OLD CANCELLED
cleanup_flush_task request_id=req-1  ← OLD TASK CANCELLED
flush_on_cleanup request_id=req-1  ← OLD BUFFER FLUSHED
cleanup_buffer request_id=req-1  ← OLD BUFFER CLEARED
event_buffers_cleaned trace=A  ← OLD CLEANUP DONE
stream_end trace=A cleanup_done=True  ← OLD FINALIZED

prev_stream_finished_cleanly  ← WAIT OK
flush_scheduled request_id=req-2  ← NEW STARTS
flush_start request_id=req-2
flush_done request_id=req-2
event_buffers_cleaned trace=B
stream_end trace=B cleanup_done=True
"""

#: The same bare lines behind a stdlib `logging` timestamp and level; A ends before B starts.
BARE_SUPERSEDE_TIMESTAMPED = """\
2026-01-26 10:00:00,001 INFO stream_start trace=abc123 session=test-1
2026-01-26 10:00:00,060 INFO stream_cancelled trace=abc123 reason=registry_new_stream
2026-01-26 10:00:00,070 INFO prev_stream_finished_cleanly session=test-1
2026-01-26 10:00:00,071 INFO event_buffers_cleaned trace=abc123
2026-01-26 10:00:00,072 INFO stream_end trace=abc123 duration_ms=250 cleanup_done=True
2026-01-26 10:00:00,080 INFO stream_start trace=def456 session=test-1
2026-01-26 10:00:00,590 INFO event_buffers_cleaned trace=def456
2026-01-26 10:00:00,600 INFO stream_end trace=def456 duration_ms=500 cleanup_done=True
"""


def random_log(rng: random.Random, steps: int = 2000, one_line: bool = False) -> LogBuilder:
    """Interleaved streams over a few sessions with every fault sprinkled in: overlaps,
    cancels ignored, stuck and leaked flushes, bad cleanups, restarts, a blocked loop.
    `one_line`: flushes as today's server writes them (`flush`, and `flush_slow` for a
    stuck one) rather than an older server's three lines; the same draws either way."""
    log = LogBuilder().emit("server_start", version="0", host="h", port=1, pid=1, source="s",
                            log_format="logfmt", cancel_wait_ms=2000, flush_ms=75,
                            flush_bytes=1024, faults="none")  # fmt: skip
    live: list[tuple[int, str]] = []

    def cancel(k: int, session: str) -> None:
        log.cancel(k, session)
        if rng.random() < 0.5:
            log.emit(rng.choice(("flush_on_cleanup", "flush_on_end")), request_id=f"r{k}")

    def end(k: int, session: str) -> None:
        log.cleanup(k, session, reason=rng.choice(("completed", "superseded")),
                    done=rng.random() < 0.95, cleaned=rng.random() < 0.95)  # fmt: skip
        live.remove((k, session))

    def restart(k: int, session: str) -> None:
        log.emit("server_start", version="0", faults="none")
        live.clear()

    actions: list[tuple[float, Callable[[int, str], object]]] = [
        (52, lambda k, s: log.flush(k, tokens=rng.choice((0, 1, 1, 2, 4, 8)),
                                    scheduled=rng.random() < 0.7, one_line=one_line)),
        (5, cancel),
        (16, end),
        (3, lambda k, s: log.emit("flush_slow", trace=f"t{k}", size=3, waited_ms=300)
            if one_line else log.emit("flush_start", request_id=f"r{k}", size=3)),  # stuck?
        (2, lambda k, s: log.emit("flush_scheduled", request_id=f"r{k}", delay_ms=75)),  # leak?
        (2, lambda k, s: log.emit("flush_cancelled", request_id=f"r{k}")),
        (2, lambda k, s: log.emit("stream_fenced", trace=f"t{k}", session=s, stream_id=f"r{k}")),
        (2, lambda k, s: log.emit("prev_stream_finished_cleanly", session=s, waited_ms=k % 50)),
        (1, lambda k, s: log.emit("prev_stream_timeout_on_cancel", level="warning", session=s,
                                  waited_ms=2000 + k % 50)),
        (1, lambda k, s: log.emit("loop_blocked", level="error", lag_ms=900,
                                  stack="x.py:1:f <- y.py:2:g")),
        (1, lambda k, s: log.emit("loop_recovered", lag_ms=3)),
        (1, lambda k, s: log.emit("loop_lag", lag_ms=1, max_lag_ms=k % 99, active_streams=3)),
        (0.5, restart),
        (0.5, lambda k, s: log.emit("request_rejected", level="warning", session=s, status=409)),
        (1, lambda k, s: log.emit("upstream_error", request_id=f"r{k}", error="boom")),
        (2, lambda k, s: log.emit("http_request", path="/healthz", status=200)),
    ]  # fmt: skip
    weights = [weight for weight, _ in actions]
    for n in range(steps):
        if not live or rng.random() < 0.08:
            session = f"s{rng.randrange(6)}"
            log.start(n, session)
            live.append((n, session))
        else:
            k, session = rng.choice(live)
            rng.choices(actions, weights)[0][1](k, session)
        log.at(rng.random() * 0.5)
    return log.at(60).emit("loop_lag", lag_ms=1, max_lag_ms=3, active_streams=0)


#: Lines at the edges of what the logfmt scanner accepts, each worth a test of its own.
TRICKY_LINES = [
    b"event=flush_done request_id=r1 tokens_sent=00",
    b"event=flush_done request_id=r1 tokens_sent=0",
    b"event=flush_done request_id=r1 tokens_sent=",
    b"event=flush_done request_id=r1 tokens_sent=x",
    b"event=flush_done request_id=r1 tokens_sent=999999999999999999",
    b"event=flush_done request_id=r1 tokens_sent=9999999999999999999",
    b"event=flush_done request_id=r2 tokens_sent=0000000000000000000000000000000000001",
    b"event=flush_done request_id=r3 tokens_sent=123456789012345678901234567890123 size=1",
    b"event=flush_done request_id=r1",
    b"event=flush_done request_id=",
    b"event=flush_done request_id= tokens_sent=3",
    b"event=flush_done  request_id=r1 tokens_sent=3",
    b"event=flush_done",
    b"event=flush_done_late request_id=r1",
    b"event=flush_start request_id=r1 tokens_sent=2",
    b"event=flush_scheduled request_id=r1\ttokens_sent=2",
    b"event=flush_scheduled request_id=r1 tokens_sent=2abc",
    b"event=flush_start request_id=r\xff\x00\r1",
    b"event=flush_start request_id=aevent=stream_start",
    b"event=flush_done request_id=event=event=x tokens_sent=1",
    b"event=stream_event=stream_start trace=t1",
    b"event=loop_event=",
    b"xevent=stream_start trace=t9 session=s stream_id=r9",
    b"prev_event=stream_end trace=t9 stream_id=r9 cleanup_done=True",
    b"event=stream_start9 trace=t1",
    b"event=stream_startX trace=t1",
    b"event=stream_start_ trace=",
    b"event=stream_ trace=t1",
    b"event=stream_",
    b"event=stream",
    b"event=Stream_start",
    b"event=event_buffers_cleaned_x trace=t1",
    b"event=event_buffers_cleaned trace=t1",
    b"event=event_buffers_cleaned",
    b"event=upstream_error",
    b"event=request_rejected\xc3\xa9 session=s",
    b"event=loop_blocked lag_ms=9",
    b"event=server_start",
    b"event=eventevent=stream_end",
    b"level=info evenT=stream_start eventx=stream_end xvent=loop_lag evenevent=loop_lag",
    b"event=",
    b"event",
    b"ts=2026-01-26T10:00:00.5Z event=stream_start trace=z session=q stream_id=rz",
    b'ts="2026-01-26 10:00:00,123" event=stream_cancelled trace=z stream_id=rz',
    b"2026-01-26T10:00:01+01:00 event=stream_start trace=y session=q stream_id=ry",
    b'event=stream_end trace=z stream_id=rz msg="a b" cleanup_done=True',
]


#: The one-line flush at the edges of the matcher (kept apart from TRICKY_LINES, whose
#: length the garbled fixtures' draws depend on).
TRICKY_FLUSH_LINES = [
    b"event=flush trace=t1 tokens=8",
    b"event=flush trace=t1 tokens=0",
    b"event=flush trace=t1 tokens=",
    b"event=flush trace=t1 tokens=x",
    b"event=flush trace=t1 tokens=99999999999999999999",
    b"event=flush trace=t1",
    b"event=flush trace= tokens=3",
    b"event=flush trace=",
    b"event=flush tokens=3 trace=t1",
    b"event=flush",
    b"event=flushx trace=t1 tokens=2",
    b"event=flush_ trace=t1 tokens=2",
    b"event=flush  trace=t1 tokens=2",
    b"event=flush trace=t1 tokens_sent=2",
    b"event=flush request_id=r1 tokens=2",
    b"event=flush_done trace=t1 tokens=2",
    b"event=flush trace=event=flush tokens=1",
    b"event=flush_slow trace=t1 size=3 waited_ms=300",
    b"event=flush_slow trace=",
]


def garble(text: bytes, rng: random.Random) -> bytes:
    """Cut lines anywhere, drop newlines, splice in binary noise, huge and tricky lines."""
    out = bytearray()
    for line in text.splitlines(keepends=True):
        roll = rng.random()
        if roll < 0.05:
            out += line[: rng.randrange(len(line) + 1)]  # cut short, newline maybe gone
        elif roll < 0.08:
            out += bytes(rng.randrange(256) for _ in range(rng.randrange(120)))
        elif roll < 0.1:
            out += rng.choice(TRICKY_LINES) + b"\n"
        elif roll < 0.101:
            out += b"event=flush_start request_id=" + b"x" * rng.randrange(1 << 16) + b"\n"
        else:
            out += line
    return bytes(out)


# -- logs written by the real logging libraries a user's server may use ---------------
#
# Every scenario below is a list of steps in the original server's bare vocabulary
# (stream_start with trace and session, stream_end with trace, flush lines whose
# request_id is the trace), rendered by stdlib `logging`, loguru, structlog and jarvis's
# own writers, with uvicorn access lines interleaved. `python -m tests.logfixtures`
# writes them to tests/logs/<format>/<scenario>.log with <scenario>.expected.json beside
# each; a test regenerates them and checks that nothing drifted.

#: The first step's time: 2026-11-30T05:33:35Z.
DIALECT_EPOCH = 1796016815.0


@dataclass(frozen=True, slots=True)
class Step:
    """One line to log: at `t` seconds after the epoch, `event` with `fields`."""

    t: float
    level: str
    event: str
    fields: dict[str, object]


@dataclass(slots=True)
class Script:
    """A scenario being written: steps with a clock, and what diagnose must find in it."""

    findings: frozenset[str]
    steps: list[Step] = field(default_factory=list)
    t: float = 0.0

    def at(self, seconds: float) -> Script:
        self.t += seconds
        return self

    def log(self, event: str, level: str = "info", **fields: object) -> Script:
        self.steps.append(Step(self.t, level, event, fields))
        self.t += 0.001
        return self

    def flushes(self, trace: str, count: int = 2, tokens: int = 4) -> Script:
        for _ in range(count):
            self.log("flush_scheduled", request_id=trace)
            self.at(0.075).log("flush_start", request_id=trace, size=20)
            self.log("flush_done", request_id=trace, tokens_sent=tokens)
        return self


def _minimal_supersede() -> Script:
    """A supersede with the fewest fields: trace and session, no flush lines, no
    cleanup_done: healthy."""
    s = Script(frozenset()).log("stream_start", trace="abc123", session="test-1")
    s.at(0.05).log("stream_cancelled", trace="abc123", reason="registry_new_stream")
    s.at(0.1).log("prev_stream_finished_cleanly", session="test-1")
    s.log("stream_end", trace="abc123", duration_ms=250)
    s.log("stream_start", trace="def456", session="test-1")
    return s.at(0.5).log("stream_end", trace="def456", duration_ms=500)


def _supersede_start_first() -> Script:
    """B's stream_start logged before A's cancel and end: healthy."""
    s = Script(frozenset()).log("stream_start", trace="A", session="s1").flushes("A")
    s.at(0.05).log("stream_start", trace="B", session="s1")
    s.log("stream_cancelled", trace="A", reason="registry_new_stream")
    s.log("cleanup_flush_task", request_id="A").log("flush_on_cleanup", request_id="A", size=5)
    s.log("flush_start", request_id="A", size=5).log("flush_done", request_id="A", tokens_sent=2)
    s.log("cleanup_buffer", request_id="A").log("event_buffers_cleaned", trace="A")
    s.at(0.02).log("stream_end", trace="A", cleanup_done=True)
    s.log("prev_stream_finished_cleanly", session="s1")
    s.flushes("B", 3).log("event_buffers_cleaned", trace="B")
    return s.log("stream_end", trace="B", cleanup_done=True)


def _side_by_side() -> Script:
    """A FastAPI app that logs only stream_start/stream_end: two streams of one session
    ran side by side for 2 s (no flush lines, no durations): concurrent_streams."""
    s = Script(frozenset({"concurrent_streams"}))
    s.log("stream_start", trace="a1", session="s1").at(0.01)
    s.log("stream_start", trace="b2", session="s1").at(2.0)
    return s.log("stream_end", trace="a1").at(0.01).log("stream_end", trace="b2")


def _interleaved_flushes() -> Script:
    """Two streams of one session flushing turn about: concurrent_streams."""
    s = Script(frozenset({"concurrent_streams"}))
    s.log("stream_start", trace="A", session="s1").log("stream_start", trace="B", session="s1")
    for _ in range(3):
        s.flushes("A", 1).flushes("B", 1)
    s.log("stream_end", trace="A", cleanup_done=True)
    return s.log("stream_end", trace="B", cleanup_done=True)


def _cancel_ignored() -> Script:
    """A cancelled stream flushes on as if nothing happened: cancel_ignored."""
    s = Script(frozenset({"cancel_ignored"}))
    s.log("stream_start", trace="A", session="s1").flushes("A")
    s.log("stream_start", trace="B", session="s1")
    s.log("stream_cancelled", trace="A", reason="registry_new_stream").flushes("A", 5)
    s.log("stream_end", trace="A", cleanup_done=True)
    s.log("prev_stream_finished_cleanly", session="s1").flushes("B")
    return s.log("stream_end", trace="B", cleanup_done=True)


def _cleanup_missing() -> Script:
    """Two streams record cleanup_done=True, the third does not: cleanup_incomplete."""
    s = Script(frozenset({"cleanup_incomplete"}))
    for n, done in ((1, True), (2, True), (3, None)):
        s.log("stream_start", trace=f"t{n}", session=f"s{n}").flushes(f"t{n}")
        extra = {} if done is None else {"cleanup_done": done}
        s.log("stream_end", trace=f"t{n}", duration_ms=300, **extra).at(0.2)
    return s


def _not_ended() -> Script:
    """A stream that never ends while the log goes on for 40 s: stream_not_ended."""
    s = Script(frozenset({"stream_not_ended"}))
    s.log("stream_start", trace="A", session="s1").flushes("A").at(40)
    s.log("stream_start", trace="B", session="s2").flushes("B")
    return s.log("stream_end", trace="B", cleanup_done=True)


def _flush_stuck() -> Script:
    """A flush_start with no flush_done, and the log goes on: flush_stuck (and both
    streams are still open at the end: streams_open, a warning)."""
    s = Script(frozenset({"flush_stuck", "streams_open"}))
    s.log("stream_start", trace="A", session="s1").log("flush_start", request_id="A", size=3)
    return s.at(5).log("stream_start", trace="B", session="s2").flushes("B")


def _flush_task_leak() -> Script:
    """A scheduled flush neither run nor cancelled when its stream ends: flush_task_leak."""
    s = Script(frozenset({"flush_task_leak"}))
    s.log("stream_start", trace="A", session="s1").flushes("A")
    s.log("flush_scheduled", request_id="A")
    return s.log("stream_end", trace="A", cleanup_done=True)


def _no_batching() -> Script:
    """Every flush carries one token and none is scheduled: no_batching (a warning)."""
    s = Script(frozenset({"no_batching"})).log("stream_start", trace="A", session="s1")
    for _ in range(25):
        s.log("flush_start", request_id="A", size=1).log(
            "flush_done", request_id="A", tokens_sent=1
        )
    return s.log("stream_end", trace="A", cleanup_done=True)


def _cancel_timeouts() -> Script:
    """The previous stream overran the cancel wait once: cancel_timeouts (a warning)."""
    s = _minimal_supersede()
    s.findings = frozenset({"cancel_timeouts"})
    return s.log("prev_stream_timeout_on_cancel", "warning", session="test-1", waited_ms=2001)


#: Every scenario, by name: the same steps are rendered in every format.
SCENARIOS: dict[str, Callable[[], Script]] = {
    "minimal_supersede": _minimal_supersede,
    "supersede_start_first": _supersede_start_first,
    "side_by_side": _side_by_side,
    "interleaved_flushes": _interleaved_flushes,
    "cancel_ignored": _cancel_ignored,
    "cleanup_missing": _cleanup_missing,
    "not_ended": _not_ended,
    "flush_stuck": _flush_stuck,
    "flush_task_leak": _flush_task_leak,
    "no_batching": _no_batching,
    "cancel_timeouts": _cancel_timeouts,
}
#: Findings that are warnings: a log with only these exits 0.
WARNINGS = frozenset({"cancel_timeouts", "no_batching", "streams_open", "slow_cancels"})


def _message(step: Step) -> str:
    """The message a user's code logs: the event, then its fields as key=value."""
    return " ".join([step.event, *(f"{k}={v}" for k, v in step.fields.items())])


def _access_line(colors: bool) -> str:
    """What uvicorn's access logger writes for one chat request."""
    import logging

    from uvicorn.logging import AccessFormatter

    formatter = AccessFormatter(
        '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=colors
    )
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "h11_impl.py", 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5555", "POST", "/v1/chat/completions", "1.1", 200), None,
    )  # fmt: skip
    return formatter.format(record)


def _with_access(lines: list[str], steps: list[Step], colors: bool = False) -> str:
    """The lines, with an access line after each stream_start (uvicorn logs the request)."""
    out: list[str] = []
    for line, step in zip(lines, steps, strict=True):
        out.append(line)
        if step.event == "stream_start":
            out.append(_access_line(colors))
    return "\n".join(out) + "\n"


def _stamp(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{round(t % 1 * 1e6):06d}Z"


def render_stdlib(steps: list[Step], fmt: str) -> str:
    """stdlib `logging` with the given format, its clock set to each step's time (UTC)."""
    import io
    import logging
    import time

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    formatter = logging.Formatter(fmt)
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logger = logging.Logger("app.server", logging.DEBUG)
    logger.addHandler(handler)
    lines = []
    for step in steps:
        record = logger.makeRecord(
            logger.name, logging.getLevelName(step.level.upper()), "server.py", 42,
            _message(step), (), None, "chat",
        )  # fmt: skip
        record.created = DIALECT_EPOCH + step.t
        record.msecs = int(round(step.t % 1 * 1000, 6))
        logger.handle(record)
        lines.append(buffer.getvalue().rstrip("\n").rsplit("\n", 1)[-1])
    return _with_access(lines, steps)


def render_loguru(steps: list[Step], colorize: bool) -> str:
    """loguru's default format (coloured or not), its clock set to each step's time."""
    import io
    from datetime import UTC

    from loguru import logger

    buffer = io.StringIO()

    def at_step_time(record: Any) -> None:
        step = current[0]
        record["time"] = type(record["time"]).fromtimestamp(DIALECT_EPOCH + step.t, UTC)
        record.update(name="app.server", function="chat", line=42)

    current: list[Step] = []
    sink = logger.add(buffer, colorize=colorize, filter=lambda r: "fixture" in r["extra"])
    patched = logger.patch(at_step_time).bind(fixture=True)
    lines = []
    try:
        for step in steps:
            current[:] = [step]
            patched.log(step.level.upper(), _message(step))
            lines.append(buffer.getvalue().rstrip("\n").rsplit("\n", 1)[-1])
    finally:
        logger.remove(sink)
    return _with_access(lines, steps, colors=colorize)


def render_structlog(steps: list[Step], renderer: str) -> str:
    """structlog with the JSON, key=value or (coloured) console renderer. The timestamp
    processor stamps each step's time in TimeStamper(fmt="iso", utc=True)'s form."""
    import io

    import structlog

    buffer = io.StringIO()
    current: list[Step] = []

    def stamp(_: object, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event["timestamp"] = _stamp(DIALECT_EPOCH + current[0].t)
        return event

    last: Any = {
        "json": structlog.processors.JSONRenderer(),
        "kv": structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"]),
        "console": structlog.dev.ConsoleRenderer(colors=True),
    }[renderer]
    log = structlog.wrap_logger(
        structlog.PrintLogger(buffer),
        processors=[structlog.processors.add_log_level, stamp, last],
    )
    lines = []
    for step in steps:
        current[:] = [step]
        getattr(log, step.level)(step.event, **step.fields)
        lines.append(buffer.getvalue().rstrip("\n").rsplit("\n", 1)[-1])
    return _with_access(lines, steps)


def render_jarvis(steps: list[Step], as_json: bool) -> str:
    """jarvis's own writers (logfmt or JSON lines), with uvicorn's access lines."""
    from jarvis.logfmt import format_json

    write = format_json if as_json else format_logfmt
    lines = [write(_stamp(DIALECT_EPOCH + s.t), s.level, s.event, s.fields) for s in steps]
    return _with_access(lines, steps)


#: Every format a fixture is written in, by its folder name under tests/logs/.
FORMATS: dict[str, Callable[[list[Step]], str]] = {
    "jarvis_logfmt": lambda steps: render_jarvis(steps, as_json=False),
    "jarvis_json": lambda steps: render_jarvis(steps, as_json=True),
    "stdlib": lambda steps: render_stdlib(steps, "%(asctime)s %(levelname)s %(name)s: %(message)s"),
    "stdlib_dashed": lambda steps: render_stdlib(
        steps, "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
    ),
    "loguru": lambda steps: render_loguru(steps, colorize=False),
    "loguru_colour": lambda steps: render_loguru(steps, colorize=True),
    "structlog_json": lambda steps: render_structlog(steps, "json"),
    "structlog_kv": lambda steps: render_structlog(steps, "kv"),
    "structlog_console": lambda steps: render_structlog(steps, "console"),
}


def write_dialect_fixtures(root: Path) -> list[Path]:
    """Write every scenario in every format under `root`; return the files written."""
    written = []
    for fmt, render in FORMATS.items():
        folder = root / fmt
        folder.mkdir(parents=True, exist_ok=True)
        for name, build in SCENARIOS.items():
            script = build()
            log = folder / f"{name}.log"
            log.write_text(render(script.steps), encoding="utf-8")
            expected = {
                "findings": sorted(script.findings),
                "exit": 1 if script.findings - WARNINGS else 0,
            }
            (folder / f"{name}.expected.json").write_text(
                json.dumps(expected, indent=2) + "\n", encoding="utf-8"
            )
            written += [log, folder / f"{name}.expected.json"]
    return written


if __name__ == "__main__":
    from loguru import logger

    logger.remove()  # loguru's default stderr handler would echo every fixture line
    write_dialect_fixtures(Path(__file__).parent / "logs")
