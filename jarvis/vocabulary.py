"""The log vocabulary: every event name and its fields, defined once.

The server writes these events and `jarvis diagnose` reads them, so this
module is a public contract. `docs/log-events.md` is generated from it
(`python -m jarvis.vocabulary > docs/log-events.md`) and a test keeps the two
in step. Names follow the original server's log lines verbatim
(docs/background.md).
"""

from __future__ import annotations

import enum
import re
import sys
from dataclasses import dataclass

#: Past this many characters (code points) a value is cut in a log line: no client value,
#: however long, makes a line longer than the vocabulary allows.
VALUE_LIMIT = 256
#: Fields whose values are longer by nature, each with its own bound (all above VALUE_LIMIT).
FIELD_LIMITS: dict[str, int] = {"message": 1024, "prev_trace": 1024, "stack": 4096}
#: What follows the kept part of a cut value: the whole value's length, in characters.
CUT_MARK = "\u2026[{length} chars]"
#: A cut value, as a reader finds it (after unescaping): the kept part, then the mark. A
#: value is cut exactly when this matches and the kept part is its field's whole bound
#: long: an uncut value is never that long, so no client can forge a cut.
CUT_VALUE = re.compile(r"(?P<kept>.*)\u2026\[(?P<length>[0-9]+) chars\]", re.DOTALL)


def value_limit(field: str) -> int:
    """How many characters of `field`'s value a log line keeps."""
    return FIELD_LIMITS.get(field, VALUE_LIMIT)


def cut_length(field: str, value: str) -> int | None:
    """The original length of a value the log cut, or None if `value` is whole."""
    match = CUT_VALUE.fullmatch(value)
    if match is None or len(match["kept"]) != value_limit(field):
        return None
    return int(match["length"])


class Event(enum.StrEnum):
    """Every event name of the vocabulary: what the server writes, and what older
    servers wrote (`EventSpec.retired`), which `jarvis diagnose` still reads."""

    SERVER_START = "server_start"
    SERVER_STOP = "server_stop"
    PARENT_GONE = "parent_gone"
    REQUEST_REJECTED = "request_rejected"
    STREAM_QUEUED = "stream_queued"
    STREAM_START = "stream_start"
    STREAM_CANCELLED = "stream_cancelled"
    PREV_STREAM_FINISHED_CLEANLY = "prev_stream_finished_cleanly"
    PREV_STREAM_TIMEOUT_ON_CANCEL = "prev_stream_timeout_on_cancel"
    STREAM_REGISTERED = "stream_registered"
    STREAM_FENCED = "stream_fenced"
    STREAM_END = "stream_end"
    #: A stream whose `stream_end` said `cleanup_done=False` because its token source was
    #: still cleaning up (the caller's generator's `finally` outlived `--cancel-wait`) has
    #: now really finished: without it, a slow cleanup and a leak would read the same.
    STREAM_CLEANUP_FINISHED = "stream_cleanup_finished"
    FLUSH = "flush"
    FLUSH_SLOW = "flush_slow"
    FLUSH_SCHEDULED = "flush_scheduled"
    FLUSH_IMMEDIATE = "flush_immediate"
    FLUSH_START = "flush_start"
    FLUSH_DONE = "flush_done"
    FLUSH_CANCELLED = "flush_cancelled"
    FLUSH_ON_END = "flush_on_end"
    FLUSH_ON_CLEANUP = "flush_on_cleanup"
    CLEANUP_FLUSH_TASK = "cleanup_flush_task"
    CLEANUP_BUFFER = "cleanup_buffer"
    EVENT_BUFFERS_CLEANED = "event_buffers_cleaned"
    UPSTREAM_ERROR = "upstream_error"
    CALLER_ERROR = "caller_error"
    LOOP_BLOCKED = "loop_blocked"
    LOOP_RECOVERED = "loop_recovered"
    LOOP_LAG = "loop_lag"
    REGISTRY_UNAVAILABLE = "registry_unavailable"
    REGISTRY_RECOVERED = "registry_recovered"
    STREAM_DETACHED = "stream_detached"
    STREAM_RESUMED = "stream_resumed"
    STREAM_STOP_REQUESTED = "stream_stop_requested"


class EndReason(enum.StrEnum):
    """Why a stream ended: the `reason=` of `stream_end`."""

    COMPLETED = "completed"
    SUPERSEDED = "superseded"
    DISCONNECTED = "disconnected"
    ERROR = "error"
    SHUTDOWN = "shutdown"
    SEND_TIMEOUT = "send_timeout"
    #: The session asked for it (`POST /v1/streams/{id}/cancel`, `guard.stop`): a normal end.
    STOPPED = "stopped"


class CancelReason(enum.StrEnum):
    """Why a stream was told to stop: the `reason=` of `stream_cancelled`."""

    REGISTRY_NEW_STREAM = "registry_new_stream"
    CLIENT_DISCONNECTED = "client_disconnected"
    SEND_TIMEOUT = "send_timeout"
    SHUTDOWN = "shutdown"
    STOP_REQUESTED = "stop_requested"

    @property
    def end_reason(self) -> EndReason:
        """The `stream_end` reason this cancellation leads to."""
        return _CANCEL_TO_END[self]


_CANCEL_TO_END = {
    CancelReason.REGISTRY_NEW_STREAM: EndReason.SUPERSEDED,
    CancelReason.CLIENT_DISCONNECTED: EndReason.DISCONNECTED,
    CancelReason.SEND_TIMEOUT: EndReason.SEND_TIMEOUT,
    CancelReason.SHUTDOWN: EndReason.SHUTDOWN,
    CancelReason.STOP_REQUESTED: EndReason.STOPPED,
}


class FlushTrigger(enum.StrEnum):
    """What started a flush: the `trigger` label of the `jarvis_flushes_total` metric."""

    #: A stream's first token, sent at once: the debounce never delays the first token
    #: a user sees (time to first token is what a chat UI is judged by).
    FIRST = "first"
    #: The debounce timer the first token of a batch started ran out.
    DEBOUNCE = "debounce"
    #: The buffer passed `--flush-bytes`.
    IMMEDIATE = "immediate"
    #: The token source ended (or failed): what was left.
    END = "end"
    #: A stopped stream's cleanup: what was left.
    CLEANUP = "cleanup"
    #: Token by token (`--flush-ms 0`): one token, one chunk.
    TOKEN = "token"  # noqa: S105 - a flush trigger, not a secret


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event: its level, its fields in the order they are written, and what it means.

    A field in `optional` is left out of a line that has nothing to say in it (a
    stream with no model has no `model=`), rather than written empty.

    A `retired` event is no longer written (the line that replaced it says so in
    `meaning`); it stays in the vocabulary because `jarvis diagnose` reads old logs.
    """

    name: Event
    level: str
    fields: tuple[str, ...]
    meaning: str
    optional: frozenset[str] = frozenset()
    retired: bool = False

    def allows(self, keys: tuple[str, ...]) -> bool:
        """Whether a line with these fields, in this order, keeps the vocabulary: every
        field in order, but for optional ones left out."""
        present = set(keys)
        return keys == tuple(f for f in self.fields if f in present) and all(
            f in present or f in self.optional for f in self.fields
        )


def _spec(name: Event, level: str, fields: str, meaning: str) -> EventSpec:
    # "model?" is an optional field.
    names = tuple(f.rstrip("?") for f in fields.split())
    optional = frozenset(f.rstrip("?") for f in fields.split() if f.endswith("?"))
    return EventSpec(name, level, names, meaning, optional)


def _retired(name: Event, level: str, fields: str, meaning: str) -> EventSpec:
    return EventSpec(name, level, tuple(fields.split()), meaning, retired=True)


#: What an older server's flush events became: one `flush` line per flush.
_BY_FLUSH = "No longer written: one `flush` line per flush says it."


_I, _W, _E = "info", "warning", "error"

EVENTS: dict[Event, EventSpec] = {
    spec.name: spec
    for spec in (
        _spec(
            Event.SERVER_START,
            _I,
            "version host port pid source log_format cancel_wait_ms flush_ms flush_bytes faults "
            "registry worker on_busy resume_ttl_ms ping_ms",
            "The server is listening. `faults` lists the deliberate bugs switched on; "
            "`registry` is `memory` or the shared registry's `redis://host:port/db`; `worker` "
            "numbers the process among `--workers` (0 when alone); `on_busy` is what a prompt "
            "in a busy session does (`supersede`, `reject`, `queue`); `resume_ttl_ms` is 0 when "
            "resume is off; `ping_ms` is the keepalive's silence (0: never).",
        ),
        _spec(
            Event.SERVER_STOP,
            _I,
            "open_streams",
            "Graceful shutdown finished; `open_streams` is how many were still open.",
        ),
        _spec(
            Event.PARENT_GONE,
            _W,
            "supervisor_pid via exit_within_ms",
            "A `--workers` worker found its supervisor gone (killed, crashed): it shuts down "
            "as on SIGTERM (streams end `reason=shutdown`) and exits within `exit_within_ms`. "
            "`via` is how it noticed: `pipe` (the supervisor's end of the lifeline pipe "
            "closed) or `ppid` (the worker was re-parented). A `server_stop` follows when "
            "the graceful shutdown finished in time; without one, the worker was cut off at "
            "the deadline.",
        ),
        _spec(
            Event.REQUEST_REJECTED,
            _W,
            "trace session status code message",
            "A request was refused before any stream existed: a 4xx for bad input, a 503 "
            "(`registry_unavailable`) while the shared registry is down, a 409 when its "
            "session was busy and the guard's `--on-busy` policy refuses it (`session_busy` "
            "under `reject`; `queue_timeout` under `queue`, after `--queue-wait`). A 409 "
            "carries `Retry-After`; the running answer goes on untouched.",
        ),
        _spec(
            Event.STREAM_QUEUED,
            _I,
            "session trace prev_trace waited_ms",
            "Under `--on-busy queue`: the prompt `trace` arrived while its session was "
            "streaming, waited `waited_ms` (first come, first served) for the streams "
            "`prev_trace` to end, and now goes on: its `stream_start` follows. Nothing was "
            "cancelled; the two never overlapped.",
        ),
        _spec(
            Event.STREAM_START,
            _I,
            "trace session stream_id model? prompt_chars",
            "A prompt arrived and became a stream (before it is registered). `model` is the "
            "model the stream's encoding names; a stream that names none has no `model`.",
        ),
        _spec(
            Event.STREAM_CANCELLED,
            _I,
            "trace session stream_id reason",
            "The stream was told to stop; `reason=registry_new_stream` when a newer "
            "prompt in the same session superseded it; `client_disconnected` when the "
            "client went away (its connection closed, a write to it failed, or the task "
            "serving it was cancelled, say by a WebSocket handler whose socket closed); "
            "`shutdown` only when the guard's own shutdown (its lifespan's end) stopped it; "
            "`stop_requested` when its session asked to stop it (the Stop button).",
        ),
        _spec(
            Event.PREV_STREAM_FINISHED_CLEANLY,
            _I,
            "session trace prev_trace waited_ms",
            "The new stream `trace` waited `waited_ms` for the previous ones and they finished "
            "their whole cleanup (the token source's own `finally` included) within "
            "`--cancel-wait`.",
        ),
        _spec(
            Event.PREV_STREAM_TIMEOUT_ON_CANCEL,
            _W,
            "session trace prev_trace waited_ms",
            "The previous stream did not finish its cleanup (the token source's own "
            "`finally` included) within `--cancel-wait`, which is `waited_ms`; it is fenced "
            "(can emit nothing more) and the new stream goes ahead. Its `stream_end` says "
            "`cleanup_done=False` until the cleanup is over, and `stream_cleanup_finished` "
            "says when it is.",
        ),
        _spec(
            Event.STREAM_REGISTERED,
            _I,
            "trace session stream_id generation",
            "The stream is the session's active stream and may now emit tokens.",
        ),
        _spec(
            Event.STREAM_FENCED,
            _W,
            "trace session stream_id by_trace",
            "A stream that overran `--cancel-wait` is fenced: its late writes are dropped.",
        ),
        _spec(
            Event.STREAM_END,
            _I,
            "trace session stream_id duration_ms reason tokens cleanup_done",
            "The stream's `finally` ran; `cleanup_done=True` once buffers and registry "
            "entry are gone and the token source's own cleanup has finished. "
            "`cleanup_done=False`: some of it is still running, or was skipped; "
            "`stream_cleanup_finished` follows if and when it ends.",
        ),
        _spec(
            Event.STREAM_CLEANUP_FINISHED,
            _W,
            "trace session stream_id duration_ms cleanup_ms",
            "A stream that ended with `cleanup_done=False` because its token source was "
            "still cleaning up (a generator's `finally` that outlived `--cancel-wait`) is now "
            "cleaned up: its registry entry is gone. `duration_ms` is since `stream_start`, "
            "as in `stream_end`; `cleanup_ms` is how long the source took to stop once "
            "cancelled. Slow, not hung: a `cleanup_done=False` without this line is a leak.",
        ),
        _spec(
            Event.FLUSH,
            _I,
            "trace tokens",
            "One flush, written when its write returns: one SSE chunk, of which `tokens` "
            "tokens reached the client (0: none did, the client was gone or the stream "
            "fenced; a write cut short puts its batch back, and the cleanup's flush sends "
            "it). It names its stream by `trace`. What started it (the debounce timer, "
            "`--flush-bytes`, the end, the cleanup, token by token) is the `trigger` label "
            "of the `jarvis_flushes_total` metric: one line per flush, kept short, since "
            "flushes are most of a log.",
        ),
        _spec(
            Event.FLUSH_SLOW,
            _W,
            "trace size waited_ms",
            "A flush has been writing for `waited_ms` (past `--watchdog-ms`) and has not "
            "returned: the watchdog thread writes it once per flush, while the write is "
            "still under way, so a flush that never finishes shows even when the loop is "
            "blocked. Its `flush` line follows if it finishes; `jarvis diagnose` calls "
            "one that never does `flush_stuck`.",
        ),
        _retired(
            Event.FLUSH_SCHEDULED,
            _I,
            "request_id delay_ms",
            "First token of a batch: a flush task will run after the debounce delay. " + _BY_FLUSH,
        ),
        _retired(
            Event.FLUSH_IMMEDIATE,
            _I,
            "request_id size",
            "The buffer passed `--flush-bytes`: flush now instead of waiting. " + _BY_FLUSH,
        ),
        _retired(
            Event.FLUSH_START,
            _I,
            "request_id size",
            "A flush begins; `size` is the number of bytes of text in the batch. A flush "
            "that does not finish is `flush_slow` now.",
        ),
        _retired(
            Event.FLUSH_DONE,
            _I,
            "request_id tokens_sent size",
            "A flush wrote one SSE chunk holding `tokens_sent` tokens. " + _BY_FLUSH,
        ),
        _retired(
            Event.FLUSH_CANCELLED,
            _I,
            "request_id",
            "A pending flush task was cancelled before it ran. No longer written: a "
            "timer that never ran wrote nothing, and cleanup says `cleanup_flush_task`.",
        ),
        _retired(
            Event.FLUSH_ON_END,
            _I,
            "request_id size",
            "The token source ended (or failed): what is left in the buffer is flushed. "
            + _BY_FLUSH,
        ),
        _retired(
            Event.FLUSH_ON_CLEANUP,
            _I,
            "request_id size",
            "Cleanup flushes what is left in the buffer of a stopped stream. " + _BY_FLUSH,
        ),
        _retired(
            Event.CLEANUP_FLUSH_TASK,
            _I,
            "request_id",
            "Cleanup found a pending flush task and cancelled it. No longer written: the "
            "cleanup's own `flush` line (or its absence) says what the batch became, and "
            "one line a stream mattered once a stream's first token got a flush of its own.",
        ),
        _retired(
            Event.CLEANUP_BUFFER,
            _I,
            "request_id",
            "Cleanup cleared the request's token buffer. No longer written: "
            "`event_buffers_cleaned` follows at once and says it.",
        ),
        _spec(
            Event.EVENT_BUFFERS_CLEANED,
            _I,
            "trace request_id",
            "`cleanup_request_buffers` finished for the stream.",
        ),
        _spec(
            Event.UPSTREAM_ERROR,
            _E,
            "trace status message",
            "The upstream server failed; the stream ends with `reason=error`.",
        ),
        _spec(
            Event.CALLER_ERROR,
            _E,
            "trace message",
            "The app's own code raised inside `async with guard.stream(...)` (an "
            "`UpstreamError` there is `upstream_error`); the stream ends with `reason=error` "
            "and the exception propagates to the app.",
        ),
        _spec(
            Event.LOOP_BLOCKED,
            _E,
            "lag_ms stack",
            "The event loop has not answered the watchdog for `lag_ms`; `stack` is "
            "where the loop thread is stuck, innermost frame first.",
        ),
        _spec(
            Event.LOOP_RECOVERED, _W, "blocked_ms", "The loop answers again after a `loop_blocked`."
        ),
        _spec(
            Event.REGISTRY_UNAVAILABLE,
            _E,
            "op session message",
            "The shared registry (Redis) did not answer during `op` (`start`, `register`, "
            "`admit`, `release`, `renew`, `listen`): a new prompt is refused with a 503 "
            "until it is back; streams already running finish. `start` is a fleet worker "
            "that (re)started during an outage: it serves (503s) rather than exiting. "
            "`session` is empty when the failure is "
            "not one prompt's. With resume on, `replay` (storing a stream's events: the "
            "stream goes on, a resume on another process may miss them) and `resume` "
            "(reading them: the resume is a 404) are the event store's.",
        ),
        _spec(
            Event.REGISTRY_RECOVERED,
            _W,
            "down_ms",
            "The shared registry answers again after `registry_unavailable`; `down_ms` is how "
            "long this process saw it down.",
        ),
        _spec(
            Event.STREAM_DETACHED,
            _I,
            "trace session stream_id grace_ms",
            "With resume on, the last reader of a running stream went away (the client's "
            "connection closed): the answer runs on for `grace_ms` and a resume "
            "(`GET /v1/streams/{id}`) reattaches; past it, it is cancelled "
            "`reason=client_disconnected`. Not written with resume off: a disconnect cancels "
            "at once.",
        ),
        _spec(
            Event.STREAM_RESUMED,
            _I,
            "trace session stream_id last_event_id replayed live",
            "A reader (a reload, a second tab) resumed the stream after event "
            "`last_event_id`; `replayed` events were sent from the store, and `live` is "
            "`true` while the stream still runs (the reader follows it to its end). Written "
            "by the process that serves the resume, which in a fleet may not be the one "
            "running the stream (its `trace` is then empty).",
        ),
        _spec(
            Event.STREAM_STOP_REQUESTED,
            _I,
            "session stream_id where",
            "The stream's own session asked to stop it (`POST /v1/streams/{id}/cancel`, "
            "`guard.stop`). `where` is `local` (this process runs it: `stream_cancelled "
            "reason=stop_requested` follows, and the stream ends `stopped`), `remote` (another "
            "process of the fleet runs it and was told through the registry), or `ended` "
            "(it had already ended).",
        ),
        _spec(
            Event.LOOP_LAG,
            _I,
            "lag_ms max_lag_ms active_streams",
            "Periodic: the current and worst heartbeat lag of the loop since the last line.",
        ),
    )
}


def render_markdown() -> str:
    """The `docs/log-events.md` page, generated so that doc and code cannot drift."""
    lines = [
        "# Log events",
        "",
        "<!-- Generated by `python -m jarvis.vocabulary > docs/log-events.md`; "
        "tests/test_vocabulary.py fails when this page and the code disagree. -->",
        "",
        "Every line the server writes is one event. In logfmt (the default):",
        "",
        "```",
        "ts=2026-11-22T03:16:12.123456Z level=info event=stream_start trace=9f2c... "
        "session=s1 stream_id=chatcmpl-... model=jarvis-synthetic prompt_chars=31",
        "```",
        "",
        "`ts`, `level` and `event` always come first, in that order, so both "
        "`grep stream_start` and a scanner anchored on `event=` work. Fields follow in "
        "the order listed below. Values made only of `A-Za-z0-9_.:/@+-` are bare; any "
        'other value is double-quoted with `\\"`, `\\\\`, `\\n`, `\\r`, `\\t`, `\\xNN` and '
        "`\\uNNNN` escapes for every control character (C0, DEL, C1) and U+2028/U+2029, "
        "so no client value can split a line or forge a key. "
        "With `--log-format json` each line is one JSON object with the same keys.",
        "",
        f"Every value is bounded. One longer than {VALUE_LIMIT} characters "
        + "("
        + ", ".join(f"`{name}`: {limit}" for name, limit in FIELD_LIMITS.items())
        + ") is cut: the first that many characters are kept, then "
        + f"`{CUT_MARK.format(length='N')}`, N being the whole value's length: an 8 KB "
        + "session id is logged as "
        + f'`session="<its first {VALUE_LIMIT} characters>{CUT_MARK.format(length=8192)}"` '
        + "(quoted, as every value holding the `\u2026` is; in JSON it is `\\u2026`). "
        + "A value is cut exactly when it ends in that "
        + "mark and the part before the mark is its field's whole bound long: a value that "
        + "was not cut is never that long, so a client cannot forge a cut. Lengths are in "
        + "characters (code points), before escaping; `jarvis.vocabulary.cut_length` reads "
        + "one back.",
        "",
        "A flush is one line, `flush`, naming its stream by `trace`; `cleanup_flush_task` "
        "carries `request_id`, which equals the stream's `stream_id`. A flush that does "
        "not return is `flush_slow`, written by the watchdog's thread while it runs.",
        "",
        "| event | level | fields | meaning |",
        "| --- | --- | --- | --- |",
    ]
    lines += [_row(spec) for spec in EVENTS.values() if not spec.retired]
    lines += [
        "",
        "## Read in older logs",
        "",
        "Servers before the one-line flush wrote three lines per flush (`flush_scheduled`, "
        "`flush_start`, `flush_done`) and more around them. No server writes these now; "
        "`jarvis diagnose` and the timeline still read them.",
        "",
        "| event | level | fields | meaning |",
        "| --- | --- | --- | --- |",
    ]
    lines += [_row(spec) for spec in EVENTS.values() if spec.retired]
    lines += [
        "",
        "## Reasons",
        "",
        "`stream_end reason=`: " + ", ".join(f"`{r}`" for r in EndReason) + ".",
        "",
        "`stream_cancelled reason=`: " + ", ".join(f"`{r}`" for r in CancelReason) + ".",
        "",
        "`jarvis_flushes_total{trigger=}`: " + ", ".join(f"`{t}`" for t in FlushTrigger) + ".",
        "",
    ]
    return "\n".join(lines)


def _row(spec: EventSpec) -> str:
    fields = " ".join(f"`{f}` (optional)" if f in spec.optional else f"`{f}`" for f in spec.fields)
    return f"| `{spec.name}` | {spec.level} | {fields} | {spec.meaning} |"


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
