"""Resume and stop across the processes of a fleet, on a real redis-server: two guards
stand for two workers (each its own connections and subscription), and two `jarvis
serve` processes sharing Redis are the same across real processes. A stream cut on one
is resumed on the other exactly; a Stop on either stops it where it runs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from jarvis import StreamGuard
from jarvis.eventlog import RecordingLog
from jarvis.synthetic import expected_text
from jarvis.vocabulary import Event

from .redis_server import RedisServer
from .test_resume import HTTP, Client, Feed, answering, end_reason, events, text_of, until

pytestmark = pytest.mark.timeout(30)


def worker(url: str, **settings: Any) -> tuple[StreamGuard, RecordingLog]:
    log = RecordingLog()
    guard = StreamGuard(log=log, registry=url, flush_ms=0, resume_ttl=5.0, **settings)  # type: ignore[arg-type]
    return guard, log


async def test_a_stream_cut_on_one_worker_resumes_on_another_with_no_gap_nor_duplicate(
    redis_server: RedisServer,
) -> None:
    """The client leaves worker 1 mid-answer; its resume lands on worker 2, which replays
    the rest from Redis and follows the stream live to its end: the two halves are the
    whole answer, ids 1..N once each, and worker 2 logs the resume."""
    one, log1 = worker(redis_server.url, detach_grace=5.0)
    two, log2 = worker(redis_server.url)
    async with one.lifespan(None), two.lifespan(None):
        feed, first = Feed(), Client()
        task = asyncio.create_task(
            one.response("s", feed.tokens())(HTTP, first.receive, first.send)
        )
        feed.give("one ", "two ")
        await until(lambda: first.events_seen == 2)
        first.leave()
        await until(lambda: log1.of(Event.STREAM_DETACHED) != [])
        feed.give("three ")
        await asyncio.sleep(0.05)  # stored on Redis before the resume: part of the backlog
        stream_id = first.headers["x-stream-id"]
        last = events(first.body)[-1][0]
        tab = Client()
        reader = asyncio.create_task(
            two.resume("s", stream_id, str(last))(HTTP, tab.receive, tab.send)
        )
        await until(lambda: tab.events_seen >= 1)
        feed.give("four")
        feed.finish()
        await asyncio.wait_for(asyncio.gather(task, reader), 5)
    whole = events(first.body) + events(tab.body)
    assert [i for i, _ in whole] == list(range(1, len(whole) + 1))
    assert text_of(whole) == "one two three four"
    assert whole[-1][1] == "[DONE]" and end_reason(whole) == "completed"
    (resumed,) = log2.of(Event.STREAM_RESUMED)
    assert (resumed["last_event_id"], resumed["live"]) == (2, True)
    assert resumed["trace"] == log1.of(Event.STREAM_START)[0]["trace"]


async def test_an_ended_stream_replays_from_any_worker_and_is_forgotten_after_the_ttl(
    redis_server: RedisServer,
) -> None:
    """Within the TTL worker 2 replays a stream worker 1 ran, byte for byte after each
    id; another session and an unknown id get a 404; past the TTL, a 404."""
    log1 = RecordingLog()
    one = StreamGuard(log=log1, registry=redis_server.url, flush_ms=0, resume_ttl=0.5)  # type: ignore[arg-type]
    two, _ = worker(redis_server.url)
    async with one.lifespan(None), two.lifespan(None):
        first = Client()
        feed = Feed()
        feed.give("a", "b", "c")
        feed.finish()
        await one.response("s", feed.tokens())(HTTP, first.receive, first.send)
        stream_id = first.headers["x-stream-id"]
        sent = first.body.split(b"\n\n")[:-1]
        await asyncio.sleep(0.05)  # the end is written to Redis after the response
        for n in (0, 2, len(sent)):
            tab = Client()
            await two.resume("s", stream_id, str(n))(HTTP, tab.receive, tab.send)
            assert tab.body == b"".join(e + b"\n\n" for e in sent[n:]), n
        for session, sid in (("other", stream_id), ("s", "chatcmpl-" + "1" * 24)):
            tab = Client()
            await two.resume(session, sid, "0")(HTTP, tab.receive, tab.send)
            assert tab.status == 404
        await asyncio.sleep(0.6)
        tab = Client()
        await two.resume("s", stream_id, "0")(HTTP, tab.receive, tab.send)
        assert tab.status == 404


async def test_stop_on_another_worker_stops_the_stream_where_it_runs(
    redis_server: RedisServer,
) -> None:
    """`guard.stop` on worker 2 reaches worker 1 through the registry: the stream ends
    `stopped` there at once, its client gets the terminal chunk; another session's stop
    is a 404 and stops nothing."""
    one, log1 = worker(redis_server.url)
    two, log2 = worker(redis_server.url)
    async with one.lifespan(None), two.lifespan(None):
        _feed, first, task, stream_id = await answering(one, "a")
        from jarvis import BadRequest

        with pytest.raises(BadRequest):
            await two.stop("other", stream_id)
        assert await two.stop("s", stream_id) is True
        await asyncio.wait_for(task, 2)
        assert end_reason(events(first.body)) == "stopped"
        await asyncio.sleep(0.05)
        assert await two.stop("s", stream_id) is False  # ended: known to the store
    (end,) = log1.of(Event.STREAM_END)
    assert end["reason"] == "stopped"
    (cancelled,) = log1.of(Event.STREAM_CANCELLED)
    assert cancelled["reason"] == "stop_requested"
    assert [r["where"] for r in log2.of(Event.STREAM_STOP_REQUESTED)] == ["remote", "ended"]


async def test_a_reader_on_another_worker_holds_a_detached_stream_past_its_grace(
    redis_server: RedisServer,
) -> None:
    """Worker 1's stream is detached; a reader on worker 2 follows it: when the grace
    runs out, worker 1 finds the reader's lease on Redis and lets the answer run on; once
    that reader has left too, the next grace cancels it."""
    one, log1 = worker(redis_server.url, detach_grace=0.3)
    two, _ = worker(redis_server.url)
    async with one.lifespan(None), two.lifespan(None):
        feed, first, task, stream_id = await answering(one, "a")
        tab = Client()
        reader = asyncio.create_task(two.resume("s", stream_id, "1")(HTTP, tab.receive, tab.send))
        await asyncio.sleep(0.1)
        first.leave()
        await asyncio.sleep(0.8)  # two graces: the remote reader keeps it going
        assert log1.of(Event.STREAM_CANCELLED) == []
        feed.give("b")
        await until(lambda: tab.events_seen == 1)
        tab.leave()
        await asyncio.wait_for(asyncio.gather(task, reader), 5)
    (cancelled,) = log1.of(Event.STREAM_CANCELLED)
    assert cancelled["reason"] == "client_disconnected"


async def test_writes_to_redis_are_batched_per_flush_never_per_token(
    redis_server: RedisServer,
) -> None:
    """A 75 ms debounce over 40 quick tokens is a handful of flushes: the store is written
    once per flush at most (one script call each), not once per token."""
    log = RecordingLog()
    guard = StreamGuard(log=log, registry=redis_server.url, flush_ms=75, resume_ttl=5.0)  # type: ignore[arg-type]
    client = aioredis.Redis.from_url(redis_server.url)
    async with guard.lifespan(None):
        await client.config_resetstat()
        feed, first = Feed(), Client()
        task = asyncio.create_task(
            guard.response("s", feed.tokens())(HTTP, first.receive, first.send)
        )
        for _ in range(40):
            feed.give("x")
            await asyncio.sleep(0.005)
        feed.finish()
        await asyncio.wait_for(task, 3)
        await asyncio.sleep(0.05)
        stats = await client.info("commandstats")
    await client.aclose()
    flushes = len(log.of(Event.FLUSH))
    # Each write of the store is one script call that ends in one PEXPIRE (the registry's
    # own scripts set no expiry with PEXPIRE this quickly: its lease renewal is seconds off).
    writes = int(stats["cmdstat_pexpire"]["calls"])
    appends = int(stats["cmdstat_xadd"]["calls"])
    assert 2 <= flushes < 40
    assert appends == len(events(first.body)) + 2  # each event once, the meta, the end
    assert writes <= flushes + 2  # the meta, a call per flush at most, the end


@pytest.mark.e2e
def test_two_jarvis_serve_processes_on_one_redis_resume_and_stop_each_others_streams(
    redis_server: RedisServer, server_factory: Any
) -> None:
    """Real processes: an answer cut on server 1 is resumed on server 2 with exactly the
    embedded model's text; a second answer is stopped through server 2 and ends `stopped`
    in server 1's log."""
    args = ("--registry", redis_server.url, "--resume-ttl", "30", "--token-rate", "200")
    one = server_factory(*args)
    two = server_factory(*args)
    prompt = {"messages": [{"role": "user", "content": "Long essay"}], "stream": True}
    body = {**prompt, "max_tokens": 60}
    headers = {"X-Session-Id": "tab-1"}
    with httpx.Client(timeout=10) as http:
        seen = b""
        with http.stream(
            "POST", f"{one.url}/v1/chat/completions", json=body, headers=headers
        ) as response:
            stream_id = response.headers["x-stream-id"]
            for chunk in response.iter_bytes():
                seen += chunk
                if seen.count(b"\n\n") >= 5:
                    break  # the reload: the connection is dropped mid-answer
        cut = events(seen[: seen.rfind(b"\n\n") + 2])
        resumed = http.get(
            f"{two.url}/v1/streams/{stream_id}",
            headers={**headers, "Last-Event-ID": str(cut[-1][0])},
        )
        assert resumed.status_code == 200
        whole = cut + events(resumed.content)
        assert [i for i, _ in whole] == list(range(1, len(whole) + 1))
        assert text_of(whole) == expected_text("Long essay", 60)
        assert end_reason(whole) == "completed"

        long = {**prompt, "max_tokens": 2000}
        with http.stream(
            "POST", f"{one.url}/v1/chat/completions", json=long, headers=headers
        ) as response:
            stream_id = response.headers["x-stream-id"]
            stop = http.post(f"{two.url}/v1/streams/{stream_id}/cancel", headers=headers)
            assert (stop.status_code, stop.json()["status"]) == (202, "stopping")
            rest = response.read()
        assert end_reason(events(rest)) == "stopped"
    one.wait_for_event("stream_end", stream_id=stream_id, reason="stopped")
    stops = [e for e in two.events() if e.get("event") == "stream_stop_requested"]
    assert [e["where"] for e in stops] == ["remote"]
    assert json.dumps(stops)  # plain fields only
