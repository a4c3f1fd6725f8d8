"""Resume in a fleet: each stream's events in a Redis Stream, so any process serves a resume.

One Redis Stream per stream, `<prefix>events:<stream_id>`, whose entry ids are the
event ids: event N is entry `N-0`, so `Last-Event-ID: N` is `XREAD ... STREAMS key N-0`
and a reader on another process blocks (`XREAD BLOCK`) for what comes next. Entry
`0-1` holds the stream's session and trace (who may resume it); the entry after the
last event (`N-1`) marks the end. Writes leave the stream's path at once and are
batched: what was appended while one write was under way goes in the next, one
script call (`XADD`s and the expiry) per batch, at most one per flush, never one per
token. A running stream's key lives `ttl` plus ten minutes past its last write (a
process that dies mid-stream leaves nothing forever); an ended one, `ttl`.

Readers in other processes also say that they follow (`<prefix>follow:<stream_id>`, a
sorted set of reader leases on Redis's clock), so the process running a detached
stream keeps it going while one does (`Followers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ._replay import Journal, MemoryReplay
from ._resume import Tail
from ._stream import StreamHandle
from .eventlog import EventSink
from .vocabulary import Event

#: Append entries (id, payload pairs) and set the key's expiry: one call per batch.
_APPEND = """
for i = 2, #ARGV, 2 do
  redis.call('XADD', KEYS[1], ARGV[i], 'e', ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
#: A reader follows for `lease` ms more (Redis's clock, so hosts need not agree on time).
_FOLLOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
#: How many readers' leases are still running.
_FOLLOWING = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""
#: A running stream's record outlives a silence this long (ms) past `ttl`.
_RUNNING_EXTRA_MS = 600_000
#: A remote reader blocks this long (ms) per read, then checks its client and renews.
_BLOCK_MS = 1000
#: A remote reader's lease (ms): renewed at least every `_BLOCK_MS`.
_LEASE_MS = 3000
META_ID = "0-1"


def end_id(last: int) -> str:
    """The entry id of the end marker of a stream whose last event is `last`."""
    return f"{last}-1" if last else "0-2"


def after_id(after: int) -> str:
    """The entry id a reader that has event `after` reads from (exclusive)."""
    return f"{after}-0" if after else META_ID


class RedisReplay(MemoryReplay):
    """This process's journals (served from memory here) written to Redis for the rest of
    the fleet, and readers of the journals other processes write."""

    def __init__(
        self,
        ttl: float,
        url: str,
        *,
        log: EventSink,
        prefix: str = "jarvis:",
        op_timeout: float = 1.0,
        max_connections: int = 256,
        max_bytes: int | None = None,
    ) -> None:
        super().__init__(ttl, max_bytes)
        self.url = url
        self._log = log
        self._prefix = prefix
        self._ttl_ms = max(1, int(ttl * 1000))
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=op_timeout,
            socket_timeout=op_timeout + _BLOCK_MS / 1000,
            socket_connect_timeout=op_timeout,
        )
        self._redis = aioredis.Redis.from_pool(pool)
        self._append = self._redis.register_script(_APPEND)
        self._follow = self._redis.register_script(_FOLLOW)
        self._following = self._redis.register_script(_FOLLOWING)
        #: Entries waiting for the next write, per stream; a stream is here while writing.
        self._pending: dict[str, list[tuple[str, bytes]]] = {}
        self._ending: dict[str, bool] = {}
        self._writers: set[asyncio.Task[None]] = set()

    def key(self, stream_id: str) -> str:
        return f"{self._prefix}events:{stream_id}"

    def follow_key(self, stream_id: str) -> str:
        return f"{self._prefix}follow:{stream_id}"

    async def stop(self) -> None:
        """Let writes under way finish (bounded), then disconnect."""
        if self._writers:
            await asyncio.wait(self._writers, timeout=2)
        await self._redis.aclose()

    # -- writing ----------------------------------------------------------------------

    def open(self, handle: StreamHandle) -> Journal:
        journal = super().open(handle)
        journal.mirror = self._mirror
        meta = f"{handle.session}\n{handle.trace}".encode()
        self._queue(journal, [(META_ID, meta)], ended=False)
        return journal

    def _mirror(self, journal: Journal, events: list[bytes], ended: bool) -> None:
        first = journal.last_id - len(events) + 1
        entries = [(f"{first + i}-0", event) for i, event in enumerate(events)]
        if ended:
            entries.append((end_id(journal.last_id), b""))
        self._queue(journal, entries, ended=ended)

    def _queue(self, journal: Journal, entries: list[tuple[str, bytes]], *, ended: bool) -> None:
        sid = journal.stream_id
        pending = self._pending.get(sid)
        if ended:
            self._ending[sid] = True
        if pending is not None:  # a write is under way: this goes in the next one
            pending.extend(entries)
            return
        self._pending[sid] = list(entries)
        task = asyncio.get_running_loop().create_task(self._write(journal))
        self._writers.add(task)
        task.add_done_callback(self._writers.discard)

    async def _write(self, journal: Journal) -> None:
        """Write what is pending for one stream, batch after batch, until nothing is."""
        sid = journal.stream_id
        try:
            while entries := self._pending.get(sid):
                self._pending[sid] = []
                ended = self._ending.get(sid, False)
                expiry = self._ttl_ms if ended else self._ttl_ms + _RUNNING_EXTRA_MS
                args: list[Any] = [expiry]
                for entry_id, payload in entries:
                    args += [entry_id, payload]
                await self._append(keys=[self.key(sid)], args=args)
        except (RedisError, OSError) as exc:
            self._log.emit(
                Event.REGISTRY_UNAVAILABLE,
                op="replay",
                session=journal.session,
                message=f"{type(exc).__name__}: {exc}",
            )
        finally:
            self._pending.pop(sid, None)
            self._ending.pop(sid, None)

    # -- reading from another process -------------------------------------------------

    async def _meta(self, session: str, stream_id: str) -> tuple[str, bool] | None:
        """The stream's trace and whether it has ended, if `session` may read it."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xrange(self.key(stream_id), META_ID, META_ID)
            pipe.xrevrange(self.key(stream_id), "+", "-", count=1)
            head, last = await pipe.execute()
        return _meta_of(head, last, session)

    async def remote_tail(self, session: str, stream_id: str, after: int) -> Tail | None:
        """A reader of a stream another process runs (or ran), if `session` may read it.

        One round trip: who may read it, its last entry and the backlog after `after`
        come in one pipeline, so the first resumed event leaves at once."""
        key = self.key(stream_id)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xrange(key, META_ID, META_ID)
                pipe.xrevrange(key, "+", "-", count=1)
                pipe.xrange(key, f"({after_id(after)}", "+")
                head, last, backlog = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._log.emit(
                Event.REGISTRY_UNAVAILABLE,
                op="resume",
                session=session,
                message=f"{type(exc).__name__}: {exc}",
            )
            return None
        meta = _meta_of(head, last, session)
        if meta is None:
            return None
        trace, ended = meta
        tail = RedisTail(self, stream_id, after, trace=trace, live=not ended)
        tail.take(backlog)
        tail.backlog = len(tail.buffered)
        return tail

    async def remote_status(self, session: str, stream_id: str) -> str | None:
        """`ended` or `live` for a stream `session` may read, or None."""
        try:
            meta = await self._meta(session, stream_id)
        except (RedisError, OSError):
            return None
        if meta is None:
            return None
        return "ended" if meta[1] else "live"

    async def following(self, handle: StreamHandle) -> bool:
        """Whether a reader in another process follows the stream now."""
        return int(await self._following(keys=[self.follow_key(handle.stream_id)])) > 0


def _meta_of(head: Any, last: Any, session: str) -> tuple[str, bool] | None:
    """From a stream's first and last entries: its trace and whether it has ended, if
    `session` is the one that may read it."""
    if not head:
        return None
    owner, _, trace = head[0][1][b"e"].decode().partition("\n")
    if owner != session:
        return None
    ended = bool(last) and not _is_event(last[0][0]) and _text(last[0][0]) != META_ID
    return trace, ended


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _is_event(entry_id: object) -> bool:
    text = _text(entry_id)
    return text.endswith("-0") and text != "0-0"


class RedisTail:
    """One reader of a stream from Redis: the entries after its cursor, then `XREAD BLOCK`
    for what comes next, until the end marker. While it reads, it holds a follow lease."""

    def __init__(
        self, replay: RedisReplay, stream_id: str, after: int, *, trace: str, live: bool
    ) -> None:
        self._replay = replay
        self._key = replay.key(stream_id)
        self._follow_key = replay.follow_key(stream_id)
        self._reader = secrets.token_hex(6)
        self._cursor = after_id(after)
        #: Events read and not yet handed out.
        self.buffered: list[bytes] = []
        self._ended = False
        self._renewed = 0.0
        self.trace = trace
        self.live = live
        self.backlog = 0

    def take(self, entries: list[Any]) -> None:
        """Entries read from the stream: events to hand out, or its end."""
        for entry_id, fields in entries:
            self._cursor = _text(entry_id)
            if _is_event(entry_id):
                self.buffered.append(fields[b"e"])
            elif self._cursor != META_ID:
                self._ended = True

    async def _renew(self) -> None:
        self._renewed = time.monotonic()
        await self._replay._follow(keys=[self._follow_key], args=[_LEASE_MS, self._reader])

    async def next(self, stop: asyncio.Future[Any]) -> bytes | None:
        redis = self._replay._redis
        try:
            while not self.buffered:
                if self._ended or stop.done():
                    return None
                if time.monotonic() - self._renewed > _LEASE_MS / 3000:
                    await self._renew()
                reply: Any = await redis.xread(
                    {self._key: self._cursor}, block=_BLOCK_MS, count=1000
                )
                for _, entries in reply or ():
                    self.take(entries)
                if not reply and not await redis.exists(self._key):
                    return None  # expired, or its process died long ago: nothing will come
        except (RedisError, OSError):
            return None  # the store is gone: the reader ends, its client resumes again
        chunk = b"".join(self.buffered)
        self.buffered = []
        return chunk

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):  # else the lease runs out by itself
            await self._replay._redis.zrem(self._follow_key, self._reader)
