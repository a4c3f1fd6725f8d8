"""Event ids, resume and stop, in one process: every SSE event carries its place in the
stream, a resume after event N gets exactly the rest, a disconnect with resume on is not
a Stop, and only the stream's own session may resume or stop it. Driven with raw ASGI
receive/send (a stream's chunks are timed), and through the reference app over httpx."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from jarvis import AnthropicEvents, BadRequest, GuardSettings, StreamGuard
from jarvis.config import ServerConfig
from jarvis.eventlog import RecordingLog
from jarvis.server.app import create_app
from jarvis.vocabulary import Event

from . import test_guard

pytestmark = pytest.mark.timeout(15)

HTTP: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": []}


class Client(test_guard.Client):
    """One ASGI connection (test_guard's), whose `leave()` disconnects it: a body sent
    after that fails as a server's send does, and `events_seen` counts what arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.events_seen = 0

    async def send(self, message: dict[str, Any]) -> None:
        if self.gone.is_set() and message["type"] == "http.response.body":
            raise OSError("the client is gone")  # what a server's send does then
        await super().send(message)
        self.events_seen = len(events(self.body))

    def leave(self) -> None:
        self.gone.set()


class Feed:
    """A token source the test drives: `give(...)` tokens, `finish()` to end it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()

    def give(self, *tokens: str) -> None:
        for token in tokens:
            self.queue.put_nowait(token)

    def finish(self) -> None:
        self.queue.put_nowait(None)

    async def tokens(self) -> AsyncIterator[str]:
        while (token := await self.queue.get()) is not None:
            yield token


def streaming(guard: StreamGuard, feed: Feed, client: Client) -> asyncio.Task[None]:
    """Session "s"'s answer of `feed`'s tokens to `client`, running as its own task."""
    return asyncio.create_task(
        guard.response("s", feed.tokens())(HTTP, client.receive, client.send)
    )


async def answering(
    guard: StreamGuard, *tokens: str
) -> tuple[Feed, Client, asyncio.Task[None], str]:
    """Session "s"'s answer under way, its client having read `tokens` (an event each):
    the feed the test goes on giving, the client, the answer's task, its stream id."""
    feed, first = Feed(), Client()
    task = streaming(guard, feed, first)
    feed.give(*tokens)
    await until(lambda: first.events_seen == len(tokens))
    return feed, first, task, first.headers["x-stream-id"]


async def cut_after(
    guard: StreamGuard, log: RecordingLog, *tokens: str
) -> tuple[Feed, Client, asyncio.Task[None]]:
    """An answer whose client read `tokens` (an event each) and left: it is detached now
    (resume on), and runs on for the feed the test goes on giving."""
    feed, first, task, _ = await answering(guard, *tokens)
    first.leave()
    await until(lambda: log.of(Event.STREAM_DETACHED) != [])
    return feed, first, task


async def words(*items: str) -> AsyncIterator[str]:
    for item in items:
        await asyncio.sleep(0)
        yield item


async def until(condition: Any, within: float = 3.0) -> None:
    """Wait (bounded) for a condition the code under test makes true."""
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.001)


def events(body: bytes) -> list[tuple[int | None, str]]:
    """The SSE events of a body as (id, data joined), per the spec's field parsing."""
    out: list[tuple[int | None, str]] = []
    for block in body.decode().split("\n\n"):
        if not block.strip():
            continue
        ident: int | None = None
        data: list[str] = []
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                ident = int(value)
            elif name == "data":
                data.append(value)
        out.append((ident, "\n".join(data)))
    return out


def text_of(evts: list[tuple[int | None, str]]) -> str:
    parts = []
    for _, data in evts:
        if data.startswith("{"):
            for choice in json.loads(data).get("choices", []):
                parts.append(choice.get("delta", {}).get("content") or "")
    return "".join(parts)


def end_reason(evts: list[tuple[int | None, str]]) -> str | None:
    for _, data in reversed(evts):
        if data.startswith("{") and "jarvis" in data:
            return str(json.loads(data)["jarvis"]["end_reason"])
    return None


def guard_with(log: RecordingLog, **settings: Any) -> StreamGuard:
    return StreamGuard(log=log, flush_ms=0, **settings)  # type: ignore[arg-type]


async def test_every_event_carries_its_place_in_the_stream_the_end_marker_too() -> None:
    """ids 1, 2, 3, ... on every event, the terminal chunk and `[DONE]` included, with
    resume off (the default) as with it on; an encoder whose head or end is several
    events numbers each."""
    for settings in ({}, {"resume_ttl": 5.0}):
        guard = guard_with(RecordingLog(), **settings)
        client = Client()
        await guard.response("s", words("a", "b", "c"))(HTTP, client.receive, client.send)
        evts = events(client.body)
        assert [i for i, _ in evts] == list(range(1, len(evts) + 1))
        assert evts[-1] == (len(evts), "[DONE]")
        assert text_of(evts) == "abc"
    guard = guard_with(RecordingLog())
    client = Client()
    response = guard.response("s", words("x"), encode=AnthropicEvents("m"))
    await response(HTTP, client.receive, client.send)
    raw = client.body.decode()
    assert raw.startswith("id: 1\nevent: message_start\n")
    assert [i for i, _ in events(client.body)] == [1, 2, 3, 4, 5, 6]  # head 2, delta, end 3


async def test_a_resume_after_each_event_of_an_ended_stream_replays_exactly_the_rest() -> None:
    """Within the TTL, `Last-Event-ID: N` replays events N+1 onwards, byte for byte as
    first sent, and ends; absent, the whole stream."""
    guard = guard_with(RecordingLog(), resume_ttl=5.0)
    first = Client()
    await guard.response("s", words("a", "b", "c", "d"))(HTTP, first.receive, first.send)
    stream_id = first.headers["x-stream-id"]
    sent = first.body.split(b"\n\n")[:-1]
    for n in range(len(sent) + 1):
        reader = Client()
        await guard.resume("s", stream_id, str(n))(HTTP, reader.receive, reader.send)
        assert reader.status == 200
        assert reader.headers["x-stream-id"] == stream_id
        assert reader.body == b"".join(e + b"\n\n" for e in sent[n:]), n
    whole = Client()
    await guard.resume("s", stream_id)(HTTP, whole.receive, whole.send)
    assert whole.body == first.body


async def test_a_client_cut_mid_answer_resumes_with_no_gap_and_no_duplicate() -> None:
    """The client leaves after some events; the answer runs on (resume on); the resume
    from the last id it saw, joined to what it had, is the whole answer, once."""
    log = RecordingLog()
    guard = guard_with(log, resume_ttl=5.0, detach_grace=5.0)
    feed, first, task = await cut_after(guard, log, "one ", "two ")
    feed.give("three ", "four")
    feed.finish()
    await asyncio.wait_for(task, 3)
    seen = events(first.body)
    reader = Client()
    stream_id = first.headers["x-stream-id"]
    await guard.resume("s", stream_id, str(seen[-1][0]))(HTTP, reader.receive, reader.send)
    rest = events(reader.body)
    whole = seen + rest
    assert [i for i, _ in whole] == list(range(1, len(whole) + 1))
    assert text_of(whole) == "one two three four"
    assert end_reason(whole) == "completed"
    (end,) = log.of(Event.STREAM_END)
    assert end["reason"] == "completed"


async def test_readers_follow_a_live_stream_to_its_end_a_second_tab_too() -> None:
    """Two resumed readers of a running stream get what was sent so far, then every new
    event as it comes, then the end; `stream_resumed` says where each started."""
    log = RecordingLog()
    guard = guard_with(log, resume_ttl=5.0)
    feed, first, task, stream_id = await answering(guard, "a")
    tabs = [Client(), Client()]
    readers = [
        asyncio.create_task(guard.resume("s", stream_id, n)(HTTP, tab.receive, tab.send))
        for n, tab in zip(("0", "1"), tabs, strict=True)
    ]
    await until(lambda: tabs[0].events_seen == 1 and len(log.of(Event.STREAM_RESUMED)) == 2)
    feed.give("b", "c")
    await until(lambda: tabs[1].events_seen == 2)
    feed.finish()
    await asyncio.wait_for(asyncio.gather(task, *readers), 3)
    assert tabs[0].body == first.body
    assert events(tabs[1].body) == events(first.body)[1:]
    resumed = {r["last_event_id"]: (r["replayed"], r["live"]) for r in log.of(Event.STREAM_RESUMED)}
    assert resumed == {0: (1, True), 1: (0, True)}


async def test_only_the_streams_own_session_finds_it_and_a_garbled_id_is_a_400() -> None:
    """Another session, an unknown id, no session, and any id with resume off are one 404
    (`stream_not_found`, logged as `request_rejected`); a Last-Event-ID that is not a
    number is a 400."""
    log = RecordingLog()
    guard = guard_with(log, resume_ttl=5.0)
    first = Client()
    await guard.response("s", words("a"))(HTTP, first.receive, first.send)
    stream_id = first.headers["x-stream-id"]
    off = guard_with(RecordingLog())
    cases = [
        (guard, "other", stream_id, None, 404),
        (guard, "s", "chatcmpl-" + "0" * 24, None, 404),
        (guard, None, stream_id, None, 404),
        (guard, "s", "../etc/passwd", None, 404),
        (off, "s", stream_id, None, 404),
        (guard, "s", stream_id, "-1", 400),
        (guard, "s", stream_id, "1; drop", 400),
    ]
    for g, session, sid, last, status in cases:
        client = Client()
        await g.resume(session, sid, last)(HTTP, client.receive, client.send)
        assert client.status == status, (session, sid, last)
        code = json.loads(client.body)["error"]["code"]
        assert code == ("stream_not_found" if status == 404 else "invalid_last_event_id")
    assert [r["status"] for r in log.of(Event.REQUEST_REJECTED)] == [404] * 4 + [400] * 2


async def test_a_stream_is_forgotten_once_the_ttl_after_its_end_has_passed() -> None:
    """Resumable right after its end; a 404 once `resume_ttl` has passed."""
    guard = guard_with(RecordingLog(), resume_ttl=0.2)
    first = Client()
    await guard.response("s", words("a"))(HTTP, first.receive, first.send)
    stream_id = first.headers["x-stream-id"]
    before = Client()
    await guard.resume("s", stream_id, "0")(HTTP, before.receive, before.send)
    assert before.status == 200
    await asyncio.sleep(0.3)
    after = Client()
    await guard.resume("s", stream_id, "0")(HTTP, after.receive, after.send)
    assert after.status == 404


async def test_stop_ends_the_answer_at_once_as_stopped_for_every_reader() -> None:
    """`guard.stop` by the stream's session cancels it at once (`stop_requested`): it
    ends `stopped`, its own connection and a resumed reader get the terminal chunk
    saying so; stopping it again says it has ended; another session gets a 404."""
    log = RecordingLog()
    guard = guard_with(log, resume_ttl=5.0)
    _feed, first, task, stream_id = await answering(guard, "a")
    tab = Client()
    reader = asyncio.create_task(guard.resume("s", stream_id, "1")(HTTP, tab.receive, tab.send))
    await until(lambda: log.of(Event.STREAM_RESUMED) != [])
    with pytest.raises(BadRequest) as refused:
        await guard.stop("other", stream_id)
    assert (refused.value.status, refused.value.code) == (404, "stream_not_found")
    assert await guard.stop("s", stream_id) is True
    await asyncio.wait_for(asyncio.gather(task, reader), 2)
    assert end_reason(events(first.body)) == "stopped"
    assert end_reason(events(tab.body)) == "stopped"
    assert events(first.body)[-1][1] == "[DONE]"
    assert await guard.stop("s", stream_id) is False
    (end,) = log.of(Event.STREAM_END)
    assert (end["reason"], end["cleanup_done"]) == ("stopped", True)
    (cancelled,) = log.of(Event.STREAM_CANCELLED)
    assert cancelled["reason"] == "stop_requested"
    wheres = [r["where"] for r in log.of(Event.STREAM_STOP_REQUESTED)]
    assert wheres == ["local", "ended"]


async def test_stop_works_with_resume_off_and_knows_no_ended_stream() -> None:
    """Without resume, Stop still stops the session's running stream; once it has ended,
    its id is unknown (404)."""
    guard = guard_with(RecordingLog())
    feed, first = Feed(), Client()
    task = streaming(guard, feed, first)
    await until(lambda: guard.parts.registry.active("s") is not None)
    stream_id = guard.snapshot()["s"][0]["stream_id"]
    assert isinstance(stream_id, str)
    assert await guard.stop("s", stream_id) is True
    await asyncio.wait_for(task, 2)
    assert end_reason(events(first.body)) == "stopped"
    with pytest.raises(BadRequest) as refused:
        await guard.stop("s", stream_id)
    assert refused.value.status == 404


async def test_the_app_routes_resume_and_stop_and_hides_session_ids_beyond_loopback() -> None:
    """`jarvis serve`'s app: GET /v1/streams/{id} replays with Last-Event-ID, POST
    /v1/streams/{id}/cancel is 404 for another session; GET /v1/streams lists session
    ids to a loopback client only."""
    config = ServerConfig(
        guard=GuardSettings(resume_ttl=5.0, flush_ms=0),
        log_file=None,
        token_rate=0,
        first_token_ms=0,
    )
    app = create_app(config)
    local = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    remote = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 5}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=local, base_url="http://jarvis") as near,
        httpx.AsyncClient(transport=remote, base_url="http://jarvis") as far,
    ):
        headers = {"X-Session-Id": "s1"}
        chat = await near.post("/v1/chat/completions", json=body, headers=headers)
        stream_id = chat.headers["x-stream-id"]
        resumed = await near.get(
            f"/v1/streams/{stream_id}", headers={**headers, "Last-Event-ID": "2"}
        )
        assert resumed.status_code == 200
        assert events(resumed.content) == events(chat.content)[2:]
        other = await near.get(f"/v1/streams/{stream_id}", headers={"X-Session-Id": "s2"})
        assert other.status_code == 404
        stop = await near.post(f"/v1/streams/{stream_id}/cancel", headers={"X-Session-Id": "s2"})
        assert stop.status_code == 404
        stop = await near.post(f"/v1/streams/{stream_id}/cancel", headers=headers)
        assert (stop.status_code, stop.json()["status"]) == (200, "ended")
        assert "sessions" in (await near.get("/v1/streams")).json()
        listing = (await far.get("/v1/streams")).json()
        assert listing == {"active": 0}


async def test_a_disconnect_with_resume_on_runs_on_for_the_grace_then_cancels() -> None:
    """Resume on: the client leaving is `stream_detached`, not a cancel; the answer keeps
    producing into its store for `detach_grace`, and only then is cancelled
    `client_disconnected`, ending `disconnected` with its cleanup done."""
    log = RecordingLog()
    guard = guard_with(log, resume_ttl=5.0, detach_grace=0.4)
    feed, first, task, _ = await answering(guard, "a")
    loop = asyncio.get_running_loop()
    left = loop.time()
    first.leave()
    await until(lambda: log.of(Event.STREAM_DETACHED) != [])
    feed.give("b", "c")
    journal = guard._replay.find(first.headers["x-stream-id"])  # type: ignore[union-attr]
    assert journal is not None
    await until(lambda: journal.last_id == 3)
    assert log.of(Event.STREAM_CANCELLED) == []
    await asyncio.wait_for(task, 2)
    assert loop.time() - left >= 0.4
    (detached,) = log.of(Event.STREAM_DETACHED)
    assert detached["grace_ms"] == 400
    (cancelled,) = log.of(Event.STREAM_CANCELLED)
    assert cancelled["reason"] == "client_disconnected"
    (end,) = log.of(Event.STREAM_END)
    assert (end["reason"], end["tokens"], end["cleanup_done"]) == ("disconnected", 3, True)
    assert events(first.body) == [(1, events(first.body)[0][1])]  # nothing after it left


async def test_a_resume_within_the_grace_reattaches_and_the_answer_completes() -> None:
    """A reader that comes back within the grace keeps the answer alive past it: the
    stream completes, and the reader gets the rest; when that reader leaves too, the
    grace starts again."""
    log = RecordingLog()
    guard = guard_with(log, resume_ttl=5.0, detach_grace=0.3)
    feed, first, task = await cut_after(guard, log, "a")
    stream_id = first.headers["x-stream-id"]
    tab = Client()
    reader = asyncio.create_task(guard.resume("s", stream_id, "1")(HTTP, tab.receive, tab.send))
    await asyncio.sleep(0.5)  # past the grace: the reader holds the stream
    assert log.of(Event.STREAM_CANCELLED) == []
    feed.give("b")
    await until(lambda: tab.events_seen == 1)
    tab.leave()
    await until(lambda: len(log.of(Event.STREAM_DETACHED)) == 2)
    again = Client()
    back = asyncio.create_task(guard.resume("s", stream_id, "2")(HTTP, again.receive, again.send))
    await until(lambda: len(log.of(Event.STREAM_RESUMED)) == 2)
    feed.give("c")
    feed.finish()
    await asyncio.wait_for(asyncio.gather(task, reader, back), 2)
    whole = events(first.body) + events(tab.body) + events(again.body)
    assert [i for i, _ in whole] == list(range(1, len(whole) + 1))
    assert text_of(whole) == "abc"
    (end,) = log.of(Event.STREAM_END)
    assert end["reason"] == "completed"


async def test_with_no_grace_a_disconnect_cancels_at_once_and_stays_resumable() -> None:
    """`detach_grace=0`: the client leaving cancels the stream at once, as with resume
    off, and what it sent, its end included, is still there for a resume."""
    log = RecordingLog()
    guard = guard_with(log, resume_ttl=5.0, detach_grace=0)
    _feed, first, task, _ = await answering(guard, "a")
    first.leave()
    await asyncio.wait_for(task, 2)
    (end,) = log.of(Event.STREAM_END)
    assert end["reason"] == "disconnected"
    reader = Client()
    await guard.resume("s", first.headers["x-stream-id"], "1")(HTTP, reader.receive, reader.send)
    rest = events(reader.body)
    assert (end_reason(rest), rest[-1]) == ("disconnected", (rest[-1][0], "[DONE]"))


async def test_a_new_prompt_supersedes_a_detached_answer_at_once() -> None:
    """A detached answer within its grace is still its session's stream: the session's
    next prompt supersedes it at once, as always."""
    log = RecordingLog()
    guard = guard_with(log, resume_ttl=5.0, detach_grace=30)
    _, _, task = await cut_after(guard, log, "a")
    second = Client()
    await asyncio.wait_for(guard.response("s", words("b"))(HTTP, second.receive, second.send), 2)
    await asyncio.wait_for(task, 1)
    ends = [e["reason"] for e in log.of(Event.STREAM_END)]
    assert ends == ["superseded", "completed"]
    assert text_of(events(second.body)) == "b"


async def test_a_write_cut_short_gives_its_ids_back_so_the_journal_has_no_duplicate() -> None:
    """A token write cancelled while the transport is paused sent nothing: its event's id
    is taken back and nothing reaches the journal, so the batch sent again has that id."""
    from jarvis._emitter import SSEEmitter
    from jarvis._encoders import PlainText
    from jarvis._replay import Journal
    from jarvis._sendwatch import SendWatch
    from jarvis._stream import StreamHandle

    paused = asyncio.Event()
    sent: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message.get("body") == b"" or message["type"] != "http.response.body":
            return
        if b"stuck" in message["body"]:
            paused.set()
            await asyncio.Event().wait()  # a transport that never drains
        sent.append(message["body"])

    handle = StreamHandle(session="s")
    journal = Journal("s", handle.stream_id, handle.trace)
    emitter = SSEEmitter(
        send,
        handle,
        PlainText()(handle.stream_id),
        send_timeout=5,
        on_send_timeout=lambda: None,
        headers=[],
        watch=SendWatch(5),
        journal=journal,
    )
    await emitter.start()
    assert await asyncio.create_task(emitter.token("a"))
    writing = asyncio.create_task(emitter.token("stuck"))
    await asyncio.wait_for(paused.wait(), 1)
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    assert await asyncio.create_task(emitter.token("b"))
    assert sent == [b"id: 1\ndata: a\n\n", b"id: 2\ndata: b\n\n"]
    assert journal.events == sent
    emitter.stop()


async def test_ended_answers_past_the_memory_cap_are_forgotten_oldest_first() -> None:
    """`max_bytes` bounds what ended journals hold: the oldest ended go first, before
    their ttl; a running stream's journal is never dropped, however large."""
    from jarvis._replay import MemoryReplay
    from jarvis._stream import StreamHandle

    event = b"data: " + b"x" * 994 + b"\n\n"  # 1,002 bytes, plus its overhead
    replay = MemoryReplay(ttl=60, max_bytes=3500)
    journals = []
    for n in range(4):
        journal = replay.open(StreamHandle(session="s", stream_id=f"st-{n}"))
        journal.append([event, event])  # about 2,800 bytes: one ended journal fits
        journals.append(journal)
    assert all(replay.find(j.stream_id) is j for j in journals)  # all live: all kept
    replay.close(journals[0])
    assert replay.find("st-0") is journals[0] and replay.evicted == 0
    replay.close(journals[1])  # two ended no longer fit: the older one goes
    assert replay.find("st-0") is None and replay.find("st-1") is journals[1]
    replay.close(journals[2])
    assert replay.find("st-1") is None and replay.find("st-2") is journals[2]
    assert replay.find("st-3") is journals[3]  # still running: kept
    assert replay.evicted == 2 and replay.ended_bytes == journals[2].size <= 3500
    # Forgotten means freed: nothing (its ttl timer included) holds an evicted journal.
    gone = [weakref.ref(j) for j in journals[:2]]
    del journals[:2], journal
    gc.collect()
    assert [ref() for ref in gone] == [None, None]


async def test_resume_max_mb_drops_ended_answers_but_never_a_running_one() -> None:
    """A cap smaller than any answer: an answer resumes while it runs, and is a 404 once
    it has ended, well before its `resume_ttl`."""
    guard = guard_with(RecordingLog(), resume_ttl=60, resume_max_mb=1e-6)
    feed, _first, task, stream_id = await answering(guard, "a", "b")
    live = Client()
    reading = asyncio.create_task(guard.resume("s", stream_id, "1")(HTTP, live.receive, live.send))
    await until(lambda: len(events(live.body)) >= 1)
    assert live.status == 200
    feed.finish()
    await asyncio.wait_for(task, 3)
    await asyncio.wait_for(reading, 3)
    assert text_of(events(live.body)) == "b"  # followed to the end, after event 1
    after = Client()
    await guard.resume("s", stream_id, "0")(HTTP, after.receive, after.send)
    assert after.status == 404
    # /metrics says why: one answer forgotten by the cap, nothing kept.
    scrape = guard.prometheus.get_sample_value
    assert scrape("jarvis_resume_evicted_total") == 1.0
    assert scrape("jarvis_resume_kept_bytes") == 0.0


async def test_a_refused_prompt_leaves_no_journal_behind() -> None:
    """With resume on, a prompt refused before it streamed (409 under reject) is not kept
    for the TTL: its client never got a stream id to resume with."""
    guard = guard_with(RecordingLog(), resume_ttl=60, on_busy="reject")
    feed, _first, task, _ = await answering(guard, "a")
    refused = Client()
    await guard.response("s", words("b"))(HTTP, refused.receive, refused.send)
    assert refused.status == 409 and "x-stream-id" not in refused.headers
    feed.finish()
    await asyncio.wait_for(task, 3)
    replay = guard._replay
    assert replay is not None and len(replay) == 1  # A's, kept for the TTL; not B's
