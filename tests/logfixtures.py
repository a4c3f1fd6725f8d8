"""Small hand-built logs, one per finding and per healthy shape, for the diagnose tests."""

from __future__ import annotations

import json

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
