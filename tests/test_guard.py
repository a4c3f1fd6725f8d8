"""`StreamGuard`, the public API: responses and raw streams driven with ASGI receive/send,
the encoders' exact bytes, and the log through stdlib `logging`."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import jarvis
from jarvis import (
    AnthropicEvents,
    EndReason,
    LogfmtFormatter,
    OpenAIChunks,
    PlainText,
    StreamEnd,
    StreamGuard,
)
from jarvis.eventlog import RecordingLog
from jarvis.logfmt import format_logfmt, parse_logfmt
from jarvis.vocabulary import Event

pytestmark = pytest.mark.timeout(10)


HTTP: dict[str, Any] = {"type": "http", "method": "POST", "path": "/chat", "headers": []}


class Client:
    """One ASGI connection: records what is sent, disconnects when told to."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self.first_body = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            self.first_body.set()

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.messages[0]["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


async def words(*items: str, gate: asyncio.Event | None = None) -> AsyncIterator[str]:
    for item in items:
        if gate is not None:
            await gate.wait()
        await asyncio.sleep(0)
        yield item


async def until(condition: Any, within: float = 2.0) -> None:
    """Wait (bounded) for a condition the code under test makes true; never sleep-and-hope."""
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.001)


def data_lines(body: bytes) -> list[str]:
    return [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]


def test_public_names_are_sorted_and_all_exist() -> None:
    """`__all__` is the promise: sorted (constants, then classes, then the rest, as ruff's
    RUF022 keeps it), and every name in it importable from `jarvis`."""
    order = sorted(jarvis.__all__, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    assert jarvis.__all__ == order
    for name in jarvis.__all__:
        assert getattr(jarvis, name) is not None


async def test_response_streams_openai_chunks_then_the_terminal_chunk_and_done() -> None:
    """Any async iterator of text becomes `chat.completion.chunk` events carrying the stream
    id, then a `finish_reason` chunk and `[DONE]`; the headers name stream, trace, session."""
    guard = StreamGuard(log=RecordingLog(), flush_ms=0)  # type: ignore[arg-type]
    client = Client()
    response = guard.response("s1", words("Hel", "lo"), encode=OpenAIChunks("m1"))
    await response({"type": "http"}, client.receive, client.send)
    assert client.status == 200
    assert client.headers["content-type"].startswith("text/event-stream")
    assert client.headers["x-session-id"] == "s1"
    chunks = data_lines(client.body)
    assert chunks[-1] == "[DONE]"
    parsed = [json.loads(c) for c in chunks[:-1]]
    assert {p["id"] for p in parsed} == {client.headers["x-stream-id"]}
    assert "".join(p["choices"][0]["delta"].get("content", "") for p in parsed) == "Hello"
    assert parsed[-1]["choices"][0]["finish_reason"] == "stop"
    assert parsed[0]["model"] == "m1"


async def test_a_new_prompt_supersedes_the_session_stream_before_it_starts() -> None:
    """B in the same session cancels A, waits for A's cleanup, and only then writes:
    A ends `cancelled`/superseded with [DONE], B completes, the log says so in order."""
    log = RecordingLog()
    guard = StreamGuard(log=log, flush_ms=0)  # type: ignore[arg-type]
    a, b = Client(), Client()
    gate = asyncio.Event()
    first = asyncio.create_task(
        guard.response("s", words("a1", "a2", "a3", gate=gate))(HTTP, a.receive, a.send)
    )
    await until(lambda: guard.parts.registry.active("s") is not None)
    await guard.response("s", words("b1"))(HTTP, b.receive, b.send)
    gate.set()
    await asyncio.wait_for(first, 2)
    assert json.loads(data_lines(a.body)[-2])["choices"][0]["finish_reason"] == "cancelled"
    assert json.loads(data_lines(b.body)[0])["choices"][0]["delta"]["content"] == "b1"
    names = log.names()
    assert names.index("stream_cancelled") < names.index("prev_stream_finished_cleanly")
    ends = {f["stream_id"]: f["reason"] for f in log.of(Event.STREAM_END)}
    assert sorted(ends.values()) == ["completed", "superseded"]
    assert guard.live_count() == 0


async def test_an_invalid_session_id_is_a_clean_400_logged_as_request_rejected() -> None:
    """A session id that could forge a log line is refused before any stream exists."""
    log = RecordingLog()
    guard = StreamGuard(log=log)  # type: ignore[arg-type]
    client = Client()
    await guard.response("a\nevent=stream_end", words("x"))(HTTP, client.receive, client.send)
    assert client.status == 400
    assert json.loads(client.body)["error"]["code"] == "invalid_session_id"
    (rejected,) = log.of(Event.REQUEST_REJECTED)
    assert rejected["status"] == 400
    assert log.of(Event.STREAM_START) == []


async def test_a_missing_session_id_gets_a_session_of_its_own() -> None:
    """No session id: the stream is alone in an `anon-<stream id>` session."""
    guard = StreamGuard(log=RecordingLog())  # type: ignore[arg-type]
    client = Client()
    await guard.response(None, words("x"))(HTTP, client.receive, client.send)
    assert client.headers["x-session-id"] == "anon-" + client.headers["x-stream-id"]


async def test_client_disconnect_cancels_the_stream_and_cleans_up() -> None:
    """The client going away mid-stream ends it `disconnected`, with cleanup done."""
    log = RecordingLog()
    guard = StreamGuard(log=log, flush_ms=0)  # type: ignore[arg-type]
    client = Client()
    never = asyncio.Event()
    task = asyncio.create_task(
        guard.response("s", words("a", "b", gate=never))(HTTP, client.receive, client.send)
    )
    await until(lambda: guard.parts.registry.active("s") is not None)
    client.gone.set()
    await asyncio.wait_for(task, 2)
    (end,) = log.of(Event.STREAM_END)
    assert (end["reason"], end["cleanup_done"]) == ("disconnected", True)


async def test_a_failing_source_ends_the_stream_with_error_in_the_terminal_chunk() -> None:
    """The token source raising is `upstream_error` in the log and `error` on the wire."""
    log = RecordingLog()
    guard = StreamGuard(log=log, flush_ms=0)  # type: ignore[arg-type]

    async def broken() -> AsyncIterator[str]:
        yield "x"
        raise RuntimeError("model fell over")

    client = Client()
    await guard.response("s", broken())(HTTP, client.receive, client.send)
    last = json.loads(data_lines(client.body)[-2])
    assert last["choices"][0]["finish_reason"] == "error"
    assert "model fell over" in last["error"]["message"]
    assert log.of(Event.UPSTREAM_ERROR)[0]["message"] == "RuntimeError: model fell over"


async def test_stream_start_names_the_model_of_the_encoding_or_none() -> None:
    """`stream_start model=` is what the encoding names (a name, or a callable asked at the
    start); a stream that names no model (`PlainText`, `guard.stream` without `model=`)
    has no `model` field at all, never an empty one."""
    log = RecordingLog()
    guard = StreamGuard(log=log, flush_ms=0)  # type: ignore[arg-type]
    for session, encode in (
        ("a", OpenAIChunks("m1")),
        ("b", AnthropicEvents(lambda: "m2")),
        ("c", PlainText()),
    ):
        client = Client()
        await guard.response(session, words("x"), encode=encode)(HTTP, client.receive, client.send)

    async def write(text: str) -> None:
        return None

    async with guard.stream("d", write):
        pass
    assert [e.get("model") for e in log.of(Event.STREAM_START)] == ["m1", "m2", None, None]
    assert ["model" in e for e in log.of(Event.STREAM_START)] == [True, True, False, False]


async def test_stream_ids_follow_the_wire_format() -> None:
    """Only OpenAI chunks carry OpenAI's `chatcmpl-` ids: a plain-text or Anthropic
    response, and a raw stream, get 24 hex digits (Anthropic's wire id is `msg_` and
    those); `guard.stream(id_prefix=...)` names its own, checked like any header value."""
    guard = StreamGuard(log=RecordingLog(), flush_ms=0)  # type: ignore[arg-type]
    ids = {}
    for name, encode in (("openai", OpenAIChunks()), ("plain", PlainText())):
        client = Client()
        await guard.response(name, words("x"), encode=encode)(HTTP, client.receive, client.send)
        ids[name] = client.headers["x-stream-id"]
    client = Client()
    anthropic = guard.response(None, words("x"), encode=AnthropicEvents("c"))
    await anthropic(HTTP, client.receive, client.send)
    ids["anthropic"] = client.headers["x-stream-id"]
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{24}", ids["openai"])
    assert re.fullmatch(r"[0-9a-f]{24}", ids["plain"])
    assert re.fullmatch(r"[0-9a-f]{24}", ids["anthropic"])
    assert f'"id":"msg_{ids["anthropic"]}"' in client.body.decode()
    # The anonymous session of a stream is a session id a client may send back.
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", client.headers["x-session-id"])

    async def write(text: str) -> None:
        return None

    assert re.fullmatch(r"[0-9a-f]{24}", guard.stream("r", write).id)
    assert guard.stream("r", write, id_prefix="chatcmpl-").id.startswith("chatcmpl-")
    with pytest.raises(jarvis.ConfigError, match="id_prefix"):
        guard.stream("r", write, id_prefix="a b")


def test_plain_text_encoder_bytes() -> None:
    """Plain-text SSE: one event per batch, a line break splits data lines, `event: end`."""
    enc = PlainText()("id1")
    assert enc.content("a\nb") == b"data: a\ndata: b\n\n"
    assert enc.end(StreamEnd(EndReason.SUPERSEDED, 3)) == b"event: end\ndata: superseded\n\n"


def test_anthropic_encoder_bytes() -> None:
    """Anthropic events: message_start + content_block_start, deltas, a stop or an error."""
    enc = AnthropicEvents("claude-x", max_tokens=2)("chatcmpl-abc")
    head = enc.head().decode()
    assert head.startswith("event: message_start\ndata: ")
    assert '"model":"claude-x"' in head and '"id":"msg_abc"' in head
    assert "event: content_block_start" in head
    delta = enc.content("hi").decode()
    assert json.loads(delta.split("data: ")[1])["delta"] == {"type": "text_delta", "text": "hi"}
    done = enc.end(StreamEnd(EndReason.COMPLETED, 2)).decode()
    assert '"stop_reason":"max_tokens"' in done and done.endswith(
        'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    cut = enc.end(StreamEnd(EndReason.SUPERSEDED, 1)).decode()
    assert "event: error" in cut and '"type":"superseded"' in cut


async def test_raw_stream_batches_to_write_and_tells_end_before_the_session_moves_on() -> None:
    """`guard.stream`: the first send goes at once, later ones are batched into `write`; a
    newer stream cancels the older, whose `end` callback runs (superseded) before the
    newer one's first write."""
    guard = StreamGuard(log=RecordingLog(), flush_ms=5)  # type: ignore[arg-type]
    wire: list[str] = []

    async def write(text: str) -> None:
        wire.append(text)

    async def end(e: StreamEnd) -> None:
        wire.append(f"<end {e.reason.value}>")

    entered = asyncio.Event()

    async def older() -> jarvis.GuardedStream:
        async with guard.stream("s", write, end=end) as s:
            await s.send("a")
            await s.send("b")
            await s.send("c")
            entered.set()
            while not s.cancelled:
                await asyncio.sleep(0.001)
        return s

    task = asyncio.create_task(older())
    await entered.wait()
    async with guard.stream("s", write, end=end) as newer:
        assert await newer.send("d")
    first = await asyncio.wait_for(task, 2)
    assert first.end is not None and first.end.reason is EndReason.SUPERSEDED
    assert newer.end == StreamEnd(EndReason.COMPLETED, 1)
    assert wire == ["a", "bc", "<end superseded>", "d", "<end completed>"]


async def test_the_callers_own_exception_in_a_raw_stream_is_a_caller_error() -> None:
    """An exception raised by the app's code inside `async with guard.stream(...)` is
    logged as `caller_error` (not blamed on an upstream), ends the stream `reason=error`,
    reaches `end` with its message, and propagates to the app."""
    log = RecordingLog()
    guard = StreamGuard(log=log, flush_ms=0)  # type: ignore[arg-type]
    ends: list[StreamEnd] = []

    async def write(text: str) -> None:
        return None

    async def end(e: StreamEnd) -> None:
        ends.append(e)

    async def answer() -> None:
        async with guard.stream("s", write, end=end, trace="t1") as s:
            await s.send("x")
            raise ValueError("bad prompt template")

    with pytest.raises(ValueError, match="bad prompt template"):
        await answer()
    (caller,) = log.of(Event.CALLER_ERROR)
    assert (caller["trace"], caller["message"]) == ("t1", "ValueError: bad prompt template")
    assert log.of(Event.UPSTREAM_ERROR) == []
    (stream_end,) = log.of(Event.STREAM_END)
    assert stream_end["reason"] == "error"
    assert ends == [StreamEnd(EndReason.ERROR, 1, "ValueError: bad prompt template")]


async def test_an_upstream_error_raised_in_a_raw_stream_is_an_upstream_error() -> None:
    """The app raising `UpstreamError` inside the block says its upstream failed: that is
    `upstream_error`, with the status the exception carries."""
    log = RecordingLog()
    guard = StreamGuard(log=log, flush_ms=0)  # type: ignore[arg-type]

    async def write(text: str) -> None:
        return None

    async def answer() -> None:
        async with guard.stream("s", write):
            raise jarvis.UpstreamError("upstream answered 502", status=502)

    with pytest.raises(jarvis.UpstreamError):
        await answer()
    (upstream,) = log.of(Event.UPSTREAM_ERROR)
    assert (upstream["status"], upstream["message"]) == (502, "upstream answered 502")
    assert log.of(Event.CALLER_ERROR) == []


async def test_raw_stream_send_is_refused_once_cancelled() -> None:
    """After a newer prompt took the session, `send` returns False and writes nothing."""
    guard = StreamGuard(log=RecordingLog(), flush_ms=0)  # type: ignore[arg-type]
    wire: list[str] = []

    async def write(text: str) -> None:
        wire.append(text)

    async with guard.stream("s", write) as s:
        active = guard.parts.registry.active("s")
        assert active is not None
        guard.parts.registry.cancel(active, jarvis.CancelReason.SHUTDOWN)
        assert s.cancelled
        assert await s.send("late") is False
    assert wire == []
    assert s.end is not None and s.end.reason is EndReason.SHUTDOWN


async def test_without_log_the_events_go_to_the_jarvis_stream_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No `log=`: every event is a record of `jarvis.stream`, its message the event in
    logfmt (`event=... key=value`), its fields on the record for structured formatters."""
    caplog.set_level(logging.INFO, logger="jarvis.stream")
    guard = StreamGuard(flush_ms=0)
    client = Client()
    await guard.response("s1", words("x"))(HTTP, client.receive, client.send)
    records = [r for r in caplog.records if r.name == "jarvis.stream"]
    assert records[0].jarvis_event == "stream_start"  # type: ignore[attr-defined]
    assert records[0].getMessage().startswith("event=stream_start trace=")
    end = next(r for r in records if r.jarvis_event == "stream_end")  # type: ignore[attr-defined]
    assert "reason=completed" in end.getMessage()


def test_logfmt_formatter_writes_what_the_server_writes() -> None:
    """`LogfmtFormatter` renders a guard record byte for byte as `jarvis serve` would, and
    escapes a foreign record's message so it cannot split or forge a line."""
    fields = {"trace": "t1", "session": "s 1", "stream_id": "c1", "model": "m", "prompt_chars": 3}
    record = logging.LogRecord("jarvis.stream", logging.INFO, __file__, 1, "%s", ("x",), None)
    record.jarvis_event = "stream_start"
    record.jarvis_fields = fields
    line = LogfmtFormatter().format(record)
    ts = parse_logfmt(line)["ts"]
    assert line == format_logfmt(ts, "info", "stream_start", fields)
    forged = logging.LogRecord(
        "app", logging.WARNING, __file__, 1, "user said %s", ("a\nevent=stream_end x=1",), None
    )
    out = LogfmtFormatter().format(forged)
    assert "\n" not in out
    assert parse_logfmt(out)["msg"] == "user said a\nevent=stream_end x=1"
    assert "event" not in parse_logfmt(out)


async def test_lifespan_ends_live_streams_on_shutdown() -> None:
    """Leaving the lifespan cancels every live stream (`reason=shutdown`), bounded."""
    log = RecordingLog()
    guard = StreamGuard(log=log, flush_ms=0, shutdown_timeout=1.0)  # type: ignore[arg-type]
    client = Client()
    never = asyncio.Event()
    async with guard.lifespan(None):
        task = asyncio.create_task(
            guard.response("s", words("a", gate=never))(HTTP, client.receive, client.send)
        )
        await until(lambda: guard.live_count() == 1)
    await asyncio.wait_for(task, 2)
    (end,) = log.of(Event.STREAM_END)
    assert end["reason"] == "shutdown"


def test_bad_settings_are_config_errors() -> None:
    """A setting that cannot work is refused at construction with a message naming it."""
    with pytest.raises(jarvis.ConfigError, match="cancel_wait"):
        StreamGuard(cancel_wait=0)
    with pytest.raises(jarvis.ConfigError, match="flush_ms"):
        StreamGuard(flush_ms=-1)


async def test_an_end_callback_that_raises_still_counts_as_cleaned_up() -> None:
    """The transport dies at the very end (the end message cannot be sent): the registry
    entry is gone, so `stream_end` says cleanup_done=True and nothing escapes the block."""
    log = RecordingLog()
    guard = StreamGuard(log=log, flush_ms=0)  # type: ignore[arg-type]

    async def write(text: str) -> None:
        return None

    async def end(e: StreamEnd) -> None:
        raise ConnectionResetError("socket closed")

    async with guard.stream("s", write, end=end) as s:
        await s.send("x")
    (stream_end,) = log.of(Event.STREAM_END)
    assert stream_end["cleanup_done"] is True
    assert guard.live_count() == 0


async def test_a_write_that_raises_in_a_debounce_flush_ends_the_stream_as_disconnected() -> None:
    """`write` failing inside a timer flush (the client went away) cancels the stream
    (`disconnected`), drops nothing into an unretrieved task exception, and writes no more."""
    log = RecordingLog()
    guard = StreamGuard(log=log, flush_ms=1)  # type: ignore[arg-type]
    calls: list[str] = []

    async def write(text: str) -> None:
        calls.append(text)
        raise ConnectionResetError("gone")

    async with guard.stream("s", write) as s:
        await s.send("a")
        await until(lambda: s.cancelled)
        assert await s.send("b") is False
    assert calls == ["a"]
    assert s.end is not None and s.end.reason is EndReason.DISCONNECTED
    (cancelled,) = log.of(Event.STREAM_CANCELLED)
    assert cancelled["reason"] == "client_disconnected"


async def test_send_after_the_block_is_refused() -> None:
    """Once the `async with` is left the session may belong to a successor: a late
    `send` returns False and reaches nothing."""
    guard = StreamGuard(log=RecordingLog(), flush_ms=0)  # type: ignore[arg-type]
    wire: list[str] = []

    async def write(text: str) -> None:
        wire.append(text)

    async with guard.stream("s", write) as s:
        assert await s.send("in")
    assert s.cancelled
    assert await s.send("late") is False
    assert wire == ["in"]


async def test_a_guard_serves_several_lifespans_with_its_watchdog_and_log_file(
    tmp_path: Any,
) -> None:
    """One module-level guard, entered by several test clients in turn: the watchdog runs
    again on the second entry and the log file is still written after the first exit."""
    path = tmp_path / "guard.log"
    guard = StreamGuard(log=str(path), flush_ms=0)
    for session in ("one", "two"):
        async with guard.lifespan(None):
            assert guard._watchdog._thread is not None and guard._watchdog._thread.is_alive()
            client = Client()
            await guard.response(session, words("x"))(HTTP, client.receive, client.send)
    guard.close()
    ends = [parse_logfmt(line) for line in path.read_text().splitlines() if "stream_end" in line]
    assert [e["session"] for e in ends] == ["one", "two"]


def test_log_takes_a_logger_adapter_and_refuses_what_cannot_log() -> None:
    """A `LoggerAdapter` logs through its logger (its `extra` would drop the fields); a
    value that is no log target is a ConfigError naming what is accepted."""
    adapter = logging.LoggerAdapter(logging.getLogger("app.chat"), {"app": "x"})
    guard = StreamGuard(log=adapter)  # type: ignore[arg-type]
    assert guard.parts.log.logger is adapter.logger  # type: ignore[attr-defined]
    with pytest.raises(jarvis.ConfigError, match=r"file path, a logging\.Logger or None"):
        StreamGuard(log=42)  # type: ignore[arg-type]


def test_a_trace_id_that_could_split_a_header_or_a_line_is_refused() -> None:
    """`trace=` is the caller's, but it lands in headers and log lines: only plain tokens."""
    guard = StreamGuard(log=RecordingLog())  # type: ignore[arg-type]
    with pytest.raises(jarvis.ConfigError, match="trace"):
        guard.response("s", words("x"), trace="a\r\nX-Evil: 1")


async def _overlap_with_a_slow_finally(
    finally_s: float, cancel_wait: float
) -> tuple[RecordingLog, float, list[int]]:
    """A streams from a generator whose `finally` takes `finally_s`; B, in the same session,
    supersedes it. Returns the log, how long B waited before its first byte, and how many
    records the log held when A's `finally` ended (the first element)."""
    log = RecordingLog()
    guard = StreamGuard(log=log, flush_ms=0, cancel_wait=cancel_wait)  # type: ignore[arg-type]
    finally_ended: list[int] = []

    async def slow_cleanup() -> AsyncIterator[str]:
        try:
            while True:
                yield "a"
                await asyncio.sleep(0.01)
        finally:
            await asyncio.sleep(finally_s)  # the user's cleanup: a DB write, a span export
            finally_ended.append(len(log.records))

    a, b = Client(), Client()
    first = asyncio.create_task(guard.response("s", slow_cleanup())(HTTP, a.receive, a.send))
    await asyncio.wait_for(a.first_body.wait(), 2)
    started = time.monotonic()
    second = asyncio.create_task(guard.response("s", words("b"))(HTTP, b.receive, b.send))
    await asyncio.wait_for(b.first_body.wait(), cancel_wait + finally_s + 1)
    waited = time.monotonic() - started
    await asyncio.wait_for(asyncio.gather(first, second), cancel_wait + 1)
    await until(lambda: guard.live_count() == 0, within=finally_s + 1)
    return log, waited, finally_ended


@pytest.mark.timeout(15)
async def test_a_finally_past_cancel_wait_is_waited_for_then_reported_still_running() -> None:
    """The user's generator's `finally` takes 3 s, `cancel_wait=2.0`: B waits the whole
    2.0 s (not the 1 s a hidden producer bound used to cut it to), the log says the old
    stream timed out and never that it finished cleanly, its `stream_end` says
    `cleanup_done=False`, and `stream_cleanup_finished` comes once the `finally` has ended."""
    log, waited, finally_ended = await _overlap_with_a_slow_finally(3.0, cancel_wait=2.0)
    assert 1.9 <= waited < 2.8, waited
    assert log.of(Event.PREV_STREAM_FINISHED_CLEANLY) == []
    (timeout,) = log.of(Event.PREV_STREAM_TIMEOUT_ON_CANCEL)
    assert 1900 <= int(timeout["waited_ms"]) < 2800  # type: ignore[call-overload]
    (start_a, _) = log.of(Event.STREAM_START)
    ends = {e["stream_id"]: e for e in log.of(Event.STREAM_END)}
    assert ends[start_a["stream_id"]]["cleanup_done"] is False
    assert ends[start_a["stream_id"]]["reason"] == "superseded"
    (late,) = log.of(Event.STREAM_CLEANUP_FINISHED)
    assert late["stream_id"] == start_a["stream_id"]
    assert 2900 <= int(late["cleanup_ms"]) < 3800  # type: ignore[call-overload]
    # Nothing claimed A clean before its `finally` ended; the late line came after it.
    (ended_at,) = finally_ended
    late_at = log.records.index((Event.STREAM_CLEANUP_FINISHED, late))
    assert late_at >= ended_at
    claims = [
        i
        for i, (event, fields) in enumerate(log.records)
        if event is Event.STREAM_END
        and fields["stream_id"] == start_a["stream_id"]
        and fields["cleanup_done"] is True
    ]
    assert claims == []


@pytest.mark.timeout(15)
async def test_a_finally_within_cancel_wait_is_waited_for_and_reported_clean() -> None:
    """A `finally` of 1.5 s under `cancel_wait=2.0` is part of the old stream's cleanup: B
    waits for it (about 1.5 s, past the old hidden 1 s bound) and only then hears
    `prev_stream_finished_cleanly`, whose `waited_ms` is that real wait."""
    log, waited, finally_ended = await _overlap_with_a_slow_finally(1.5, cancel_wait=2.0)
    assert 1.4 <= waited < 1.95, waited
    (clean,) = log.of(Event.PREV_STREAM_FINISHED_CLEANLY)
    assert 1400 <= int(clean["waited_ms"]) < 1950  # type: ignore[call-overload]
    assert log.of(Event.PREV_STREAM_TIMEOUT_ON_CANCEL) == []
    assert log.of(Event.STREAM_CLEANUP_FINISHED) == []
    assert all(e["cleanup_done"] is True for e in log.of(Event.STREAM_END))
    (ended_at,) = finally_ended
    clean_at = log.records.index((Event.PREV_STREAM_FINISHED_CLEANLY, clean))
    assert clean_at >= ended_at


async def test_a_raw_stream_whose_task_is_cancelled_ends_disconnected_not_shutdown() -> None:
    """The natural WebSocket code cancels the answer task when the socket closes: the
    guard is not shutting down, so the caller gave up on the stream. It is a
    `client_disconnected` cancel and ends `disconnected`, cleaned up."""
    log = RecordingLog()
    guard = StreamGuard(log=log, flush_ms=0)  # type: ignore[arg-type]
    streams: list[jarvis.GuardedStream] = []

    async def write(text: str) -> None:
        return None  # the transport itself never fails here: only the cancel ends it

    async def answer() -> None:
        async with guard.stream("ws", write) as s:
            streams.append(s)
            while await s.send("t"):
                await asyncio.sleep(0.001)

    task = asyncio.create_task(answer())
    await until(lambda: bool(streams) and guard.parts.registry.active("ws") is not None)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    (s,) = streams
    assert s.end is not None and s.end.reason is EndReason.DISCONNECTED
    (cancelled,) = log.of(Event.STREAM_CANCELLED)
    assert cancelled["reason"] == "client_disconnected"
    (end,) = log.of(Event.STREAM_END)
    assert (end["reason"], end["cleanup_done"]) == ("disconnected", True)
    assert guard.live_count() == 0


async def test_a_response_whose_task_is_cancelled_ends_disconnected_not_shutdown() -> None:
    """A middleware or server that cancels the request task when the client goes away
    (no `http.disconnect` ever reaches the guard) ends the SSE stream `disconnected`."""
    log = RecordingLog()
    guard = StreamGuard(log=log, flush_ms=0)  # type: ignore[arg-type]
    client = Client()
    never = asyncio.Event()
    task = asyncio.create_task(
        guard.response("s", words("a", "b", gate=never))(HTTP, client.receive, client.send)
    )
    await until(lambda: guard.parts.registry.active("s") is not None)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    (cancelled,) = log.of(Event.STREAM_CANCELLED)
    assert cancelled["reason"] == "client_disconnected"
    (end,) = log.of(Event.STREAM_END)
    assert (end["reason"], end["cleanup_done"]) == ("disconnected", True)


async def test_a_task_cancelled_after_the_guards_shutdown_told_it_to_stop_ends_shutdown() -> None:
    """Shutdown is what the guard's own shutdown does: a stream it told to stop keeps
    `reason=shutdown` even when the server then cancels the task serving it."""
    log = RecordingLog()
    guard = StreamGuard(log=log, flush_ms=0)  # type: ignore[arg-type]
    streams: list[jarvis.GuardedStream] = []

    async def write(text: str) -> None:
        return None

    async def answer() -> None:
        async with guard.stream("ws", write) as s:
            streams.append(s)
            await asyncio.Event().wait()  # ignores `s.cancelled`: only the task cancel ends it

    task = asyncio.create_task(answer())
    await until(lambda: bool(streams))
    assert await guard.shutdown(wait_s=0.01) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert [c["reason"] for c in log.of(Event.STREAM_CANCELLED)] == ["shutdown"]
    (end,) = log.of(Event.STREAM_END)
    assert end["reason"] == "shutdown"


async def test_error_response_gives_refusals_the_apps_own_shape_and_status() -> None:
    """`StreamGuard(error_response=...)` builds the response to every refusal: the 400 of
    a bad session id and the 503 of a registry that is down each reach it as a
    `BadRequest`; what it returns is sent (with `X-Trace-Id` added) and its status is
    the one `request_rejected` logs."""
    from starlette.responses import JSONResponse

    from jarvis._registry import StreamRegistry

    seen: list[jarvis.BadRequest] = []

    def problem(exc: jarvis.BadRequest) -> JSONResponse:
        seen.append(exc)
        status = 422 if exc.status == 400 else exc.status
        return JSONResponse({"detail": exc.message, "field": exc.param}, status_code=status)

    log = RecordingLog()
    guard = StreamGuard(log=log, error_response=problem)  # type: ignore[arg-type]
    client = Client()
    await guard.response("a b", words("x"))(HTTP, client.receive, client.send)
    assert client.status == 422
    assert json.loads(client.body) == {
        "detail": "the session id must match ^[A-Za-z0-9._:-]{1,128}$",
        "field": "X-Session-Id",
    }
    assert client.headers["x-trace-id"] == log.of(Event.REQUEST_REJECTED)[0]["trace"]
    assert log.of(Event.REQUEST_REJECTED)[0]["status"] == 422

    class Down(StreamRegistry):
        def unavailable(self) -> bool:
            return True

    guard.parts.registry = Down(log)
    client = Client()
    await guard.response("s", words("x"))(HTTP, client.receive, client.send)
    assert client.status == 503
    assert seen[-1].code == "registry_unavailable"
    assert [r["status"] for r in log.of(Event.REQUEST_REJECTED)] == [422, 503]
    assert log.of(Event.STREAM_START) == []


async def test_the_session_error_names_where_the_id_came_from() -> None:
    """An app that reads the session id from its body says so (`session_from=`): the 400's
    `param` names that field, not the header; the header stays the default."""
    guard = StreamGuard(log=RecordingLog())  # type: ignore[arg-type]
    client = Client()
    bad = guard.response("a b", words("x"), session_from="metadata.session_id")
    await bad(HTTP, client.receive, client.send)
    error = json.loads(client.body)["error"]
    assert (error["param"], error["code"]) == ("metadata.session_id", "invalid_session_id")
    client = Client()
    await guard.response("a b", words("x"))(HTTP, client.receive, client.send)
    assert json.loads(client.body)["error"]["param"] == "X-Session-Id"

    async def write(text: str) -> None:
        return None

    with pytest.raises(jarvis.BadRequest) as refused:
        guard.stream("a b", write, session_from="query:session")
    assert refused.value.param == "query:session"


def test_error_response_must_be_callable() -> None:
    """A hook that cannot be called is refused when the guard is built, not at the first
    refusal."""
    with pytest.raises(jarvis.ConfigError, match="error_response"):
        StreamGuard(error_response="json")  # type: ignore[arg-type]
