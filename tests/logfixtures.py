"""Small hand-built logs, one per finding and per healthy shape, for the diagnose tests."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

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

    def flush(self, n: int, tokens: int = 4, scheduled: bool = True) -> LogBuilder:
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
    """A then B in one session, the quick reference's order (B's start before A's end)."""
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


SEED_PLAIN_QUICK_REFERENCE = """\
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

SEED_PLAIN_STABILITY = """\
2026-01-26 10:00:00,001 INFO stream_start trace=abc123 session=test-1
2026-01-26 10:00:00,060 INFO stream_cancelled trace=abc123 reason=registry_new_stream
2026-01-26 10:00:00,070 INFO prev_stream_finished_cleanly session=test-1
2026-01-26 10:00:00,071 INFO event_buffers_cleaned trace=abc123
2026-01-26 10:00:00,072 INFO stream_end trace=abc123 duration_ms=250 cleanup_done=True
2026-01-26 10:00:00,080 INFO stream_start trace=def456 session=test-1
2026-01-26 10:00:00,590 INFO event_buffers_cleaned trace=def456
2026-01-26 10:00:00,600 INFO stream_end trace=def456 duration_ms=500 cleanup_done=True
"""


def random_log(rng: random.Random, steps: int = 2000) -> LogBuilder:
    """Interleaved streams over a few sessions with every fault sprinkled in: overlaps,
    cancels ignored, stuck and leaked flushes, bad cleanups, restarts, a blocked loop."""
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
                                    scheduled=rng.random() < 0.7)),
        (5, cancel),
        (16, end),
        (3, lambda k, s: log.emit("flush_start", request_id=f"r{k}", size=3)),  # stuck?
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
