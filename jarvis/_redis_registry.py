"""One stream per session across processes and hosts: the registry on Redis.

The same semantics as the in-process registry, with Redis as the one place
that decides. Per session it keeps a generation counter (`INCR`, the fencing
token) and an owner key (`<gen>|<worker>|<stream_id>|<trace>`, with a lease
renewed by heartbeat). One pub/sub channel carries three signals:

    cancel <session> <gen>   every process cancels its streams of the session older than gen
    fence  <session> <gen>   the process running that stream fences it (it overran the wait)
    done   <session> <gen>   that stream released the session (compare-and-delete)
    stop   <session> <gen>   the process running that stream stops it (its session asked)

A prompt: `INCR`, `GET` owner; if an older stream owns the session, `PUBLISH
cancel` and wait (bounded by `cancel_wait`, holding nothing) for its `done`;
then claim with a script that never overwrites a newer owner. Release is a
compare-and-delete script that publishes `done`. About six operations per
stream and none per token: tokens never touch Redis. A worker killed mid-stream
leaves an owner whose lease runs out; a newer prompt waits at most
`cancel_wait` for it, then claims: no session is ever wedged.

Under `on_busy="reject"` or `"queue"` a prompt claims the session only while it has no
owner (`_CLAIM_FREE`, one script: two workers never both find it free) and publishes no
cancel. Refused, it is a 409; queued, it tries again at each `done` (and twice a second,
for an owner whose worker died), first come first served among this process's waiters.
Every worker of a fleet must run the same policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ._busy import QUEUE, REJECT, SUPERSEDE, busy, queue_timeout
from ._registry import SessionStreams, StreamRegistry
from ._stream import StreamHandle, StreamState
from .eventlog import EventSink
from .exceptions import RegistryUnavailable, SessionBusy
from .settings import GuardSettings, OnBusy
from .vocabulary import CancelReason, Event

if TYPE_CHECKING:  # prometheus_client is imported when a guard is built, not by `import jarvis`
    from ._metrics import Metrics

#: Defaults are GuardSettings', so a registry built alone behaves as a guard's does.
_DEFAULTS = GuardSettings()

#: Take the session: "1" done; "0" a newer generation owns it; else the value of an older
#: owner that must be superseded first (ARGV[4] names the one we may overwrite: it overran).
_CLAIM = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local g = tonumber(string.match(cur, '^(%d+)|'))
  if g and g > tonumber(ARGV[1]) then return '0' end
  if g and g < tonumber(ARGV[1]) and g ~= tonumber(ARGV[4]) then return cur end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return '1'
"""
#: Take the session only if nobody owns it: "1" done, else the owner's value (busy).
_CLAIM_FREE = """
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return '1'
"""
#: How often a queued prompt looks at a busy session's owner without a `done` signal: an
#: owner whose worker died never says `done`, its lease just runs out.
QUEUE_POLL_S = 0.5
#: Compare-and-delete: only the owner's own generation releases; then say so.
_RELEASE = """
local cur = redis.call('GET', KEYS[1])
if cur and string.match(cur, '^(%d+)|') == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""
#: Extend the leases of many owners at once (KEYS[i] still at generation ARGV[i]); the last
#: argument is the lease. One call per batch, not one command per session.
_RENEW = """
local lease = ARGV[#ARGV]
local renewed = 0
for i, key in ipairs(KEYS) do
  local cur = redis.call('GET', key)
  if cur and string.match(cur, '^(%d+)|') == ARGV[i] then
    redis.call('PEXPIRE', key, lease)
    renewed = renewed + 1
  end
end
return renewed
"""
#: Sessions renewed per script call; the loop yields between calls.
_RENEW_BATCH = 200


def _text(value: object) -> str | None:
    """A Redis reply as text (the client decodes, but its types say bytes too)."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _gen_of(owner: str | None) -> int:
    if not owner:
        return 0
    head = owner.split("|", 1)[0]
    return int(head) if head.isdigit() else 0


def _trace_of(owner: str) -> str:
    parts = owner.split("|")
    return parts[3] if len(parts) > 3 else ""


def worker_name() -> str:
    """This process, as other processes' logs name it: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RedisRegistry(StreamRegistry):
    """The `Registry` of one process of a fleet; Redis decides which stream owns a session.

    It keeps this process's bookkeeping (live streams, cancel, release, shutdown) the
    way `StreamRegistry` does, and replaces registering: the supersede-and-wait runs
    through Redis, so `StreamRegistry`'s own `supersede` and `fence` seams are unused.

    `active()`, `live_count()` and `snapshot()` are this process's view (its own
    streams). `start()` connects and subscribes (`RegistryUnavailable` if Redis does
    not answer); the guard's lifespan calls it, or the first prompt does.

    `start_down_ok`: a start that finds Redis away starts in the down state instead
    (prompts refused with a 503 until Redis answers; the listener and the heartbeat
    notice it back). A worker of `jarvis serve --workers` sets it: its supervisor
    checked Redis before it started any worker, so an absence at a worker's (re)start
    is an outage to ride out, and raising would end the worker, then the whole fleet.
    """

    def __init__(
        self,
        log: EventSink,
        url: str,
        *,
        cancel_wait: float = _DEFAULTS.cancel_wait,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        lease_ms: int = 5000,
        prefix: str = "jarvis:",
        op_timeout: float = 1.0,
        max_connections: int = 256,
        on_busy: OnBusy = SUPERSEDE,
        queue_wait: float = _DEFAULTS.queue_wait,
        start_down_ok: bool = False,
    ) -> None:
        super().__init__(
            log,
            cancel_wait=cancel_wait,
            metrics=metrics,
            clock=clock,
            on_busy=on_busy,
            queue_wait=queue_wait,
        )
        self.url = url
        # A blocking pool: a burst of prompts beyond the pool waits (bounded) for a
        # connection instead of failing as if Redis were down.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=op_timeout,
            decode_responses=True,
            socket_timeout=op_timeout,
            socket_connect_timeout=op_timeout,
        )
        self._redis = aioredis.Redis.from_pool(pool)
        self._lease_ms = lease_ms
        self._op_timeout = op_timeout
        self._prefix = prefix
        self._channel = prefix + "signals"
        self._worker = worker_name()
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)
        self._renew = self._redis.register_script(_RENEW)
        self._claim_free = self._redis.register_script(_CLAIM_FREE)
        self._owned: set[StreamHandle] = set()
        #: Admitted under reject or queue: the session is theirs already, in Redis.
        self._claimed: set[StreamHandle] = set()
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Releases on their way to Redis, by session: a prompt of this process waits for
        #: them (bounded) before it asks whether the session is free.
        self._releasing: dict[str, set[asyncio.Task[Any]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._down_since: float | None = None
        self._started = False
        self.start_down_ok = start_down_ok

    def __repr__(self) -> str:
        state = "down" if self._down_since is not None else "up"
        return f"<RedisRegistry {self.url} {state} live={self.live_count()}>"

    # -- life of the connection --------------------------------------------------------

    async def start(self) -> None:
        """Connect, subscribe and start the lease heartbeat; raise if Redis does not answer
        (unless `start_down_ok`: then start down, and recover when it answers)."""
        if self._started:
            return
        ready = asyncio.get_running_loop().create_future()
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            if not self.start_down_ok:
                message = f"cannot reach the registry at {self.url}: {exc}"
                raise RegistryUnavailable(message) from exc
            self._went_down("start", "", exc)
            ready.set_result(None)  # nothing to wait for: the listener retries until back
        self._listener = asyncio.create_task(self._listen(ready), name="registry-listener")
        self._renewer = asyncio.create_task(self._heartbeat(), name="registry-renewer")
        await asyncio.wait({ready, self._listener}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        failed = ready.exception() if ready.done() else TimeoutError("no answer within 5 s")
        if failed is not None:
            if not self.start_down_ok:
                await self.stop()
                message = f"cannot subscribe to the registry at {self.url}: {failed}"
                raise RegistryUnavailable(message) from failed
            # Down from the start: the listener goes on trying (see `_listen`).
            self._went_down("start", "", failed)
        self._started = True

    async def stop(self) -> None:
        """Stop listening and renewing; wait (bounded) for releases in flight; disconnect."""
        for task in (self._listener, self._renewer):
            if task is not None:
                task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        tasks = [t for t in (self._listener, self._renewer) if t is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=2)
        self._listener = self._renewer = None
        self._started = False
        await self._redis.aclose()

    def unavailable(self) -> bool:
        """True while this process sees Redis down: new prompts are refused (503)."""
        return self._down_since is not None

    def _went_down(self, op: str, session: str, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = self._clock()
        self._log.emit(
            Event.REGISTRY_UNAVAILABLE,
            op=op,
            session=session,
            message=f"{type(exc).__name__}: {exc}",
        )

    def _came_back(self) -> None:
        if self._down_since is None:
            return
        down_ms = int((self._clock() - self._down_since) * 1000)
        self._down_since = None
        self._log.emit(Event.REGISTRY_RECOVERED, down_ms=down_ms)

    # -- registering ---------------------------------------------------------------------

    def _key(self, kind: str, session: str) -> str:
        return f"{self._prefix}{kind}:{session}"

    async def register(self, handle: StreamHandle) -> bool:
        if not self._started:
            await self.start()
        name = handle.session
        slot = self._sessions.setdefault(name, SessionStreams())
        slot.live.append(handle)
        self._live += 1
        handle.transition(StreamState.WAITING)
        if self._on_busy != SUPERSEDE:
            return self._register_admitted(handle, slot)
        owner_key = self._key("owner", name)
        armed: list[asyncio.Future[None]] = []
        waiter = self._arm(name, armed)
        overran: str | None = None
        try:
            handle.generation = int(await self._redis.incr(self._key("gen", name)))
            value = f"{handle.generation}|{self._worker}|{handle.stream_id}|{handle.trace}"
            previous = _text(await self._redis.get(owner_key))
            while True:
                if previous and _gen_of(previous) < handle.generation:
                    if await self._supersede_remote(handle, previous, waiter, armed):
                        overran = previous
                    waiter = self._arm(name, armed)
                if handle.cancel_requested:
                    return False
                claimed = _text(
                    await self._claim(
                        keys=[owner_key],
                        args=[handle.generation, value, self._lease_ms, _gen_of(overran)],
                    )
                )
                if claimed in ("0", "1"):
                    break
                previous = claimed  # an older stream took the session meanwhile: supersede it
            if overran is not None and claimed == "1":
                await self._fence_remote(handle, overran)
        except (RedisError, OSError) as exc:
            self._went_down("register", name, exc)
            raise RegistryUnavailable(f"the registry at {self.url} did not answer") from exc
        finally:
            self._disarm(name, armed)
        if claimed == "0":
            self.cancel(handle, CancelReason.REGISTRY_NEW_STREAM)  # a newer prompt owns it
            return False
        self._owned.add(handle)
        return self.activate(slot, handle)

    def _register_admitted(self, handle: StreamHandle, slot: SessionStreams) -> bool:
        """Under reject or queue: `admit` claimed the session already (or the prompt was
        cancelled while it queued, and claims nothing)."""
        if handle not in self._claimed:
            return False
        self._claimed.discard(handle)
        self._owned.add(handle)  # from here its release gives the session back
        if handle.cancel_requested:
            return False
        return self.activate(slot, handle)

    # -- a busy session, under reject or queue ------------------------------------------

    async def admit(self, handle: StreamHandle) -> SessionBusy | None:
        """Claim the session if nobody owns it (any process); else refuse (`reject`) or
        wait for it, bounded (`queue`). `RegistryUnavailable` if Redis does not answer."""
        if self._on_busy == SUPERSEDE:
            return None
        if not self._started:
            await self.start()
        name = handle.session
        if self._on_busy == REJECT and self.running(name):
            return busy(name)  # busy here: no need to ask Redis
        releasing = self._releasing.get(name)
        if releasing:  # this process's last stream of the session is still letting go
            await asyncio.wait(set(releasing), timeout=self._op_timeout)
        try:
            handle.generation = int(await self._redis.incr(self._key("gen", name)))
            if self._on_busy == QUEUE and (self._queue.waiting(name) or self.running(name)):
                return await self._queue_remote(handle, "")  # behind this process's waiters
            owner = await self._try_claim(handle)
            if owner is None:
                return None
            if self._on_busy == REJECT:
                return busy(name)
            return await self._queue_remote(handle, owner)
        except (RedisError, OSError) as exc:
            self._went_down("admit", name, exc)
            raise RegistryUnavailable(f"the registry at {self.url} did not answer") from exc

    async def _try_claim(self, handle: StreamHandle) -> str | None:
        """Claim a free session for `handle`: None when it did, else the owner's value."""
        value = f"{handle.generation}|{self._worker}|{handle.stream_id}|{handle.trace}"
        owner = _text(
            await self._claim_free(
                keys=[self._key("owner", handle.session)], args=[value, self._lease_ms]
            )
        )
        if owner != "1":
            return owner or ""
        self._claimed.add(handle)
        return None

    async def _queue_remote(self, handle: StreamHandle, owner: str) -> SessionBusy | None:
        """Wait for the session (a `done` signal, or a look twice a second), this process's
        waiters first come first served; at most `queue_wait`."""
        name = handle.session
        loop = asyncio.get_running_loop()
        started = self._clock()
        deadline = loop.time() + self._queue_wait
        waited_for = dict.fromkeys([_trace_of(owner)] if owner else [])
        waited_for.update(dict.fromkeys(h.trace for h in self.running(name)))
        armed: list[asyncio.Future[None]] = []
        signal = self._arm(name, armed)
        turn = self._queue.join(name)
        mark = self._queue.mark(name)
        self._queued.add(handle)
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return queue_timeout(name, self._queue_wait)
                either: set[asyncio.Future[Any]] = {signal, turn, handle.cancelled}
                pause = min(remaining, QUEUE_POLL_S)
                await asyncio.wait(either, timeout=pause, return_when=asyncio.FIRST_COMPLETED)
                if handle.cancel_requested:
                    return None
                if signal.done():
                    signal = self._arm(name, armed)  # re-armed before looking: none is missed
                if turn.done():
                    turn = self._queue.again(name, turn)
                if not self._queue.first(name, turn) or self.running(name):
                    continue
                found = await self._try_claim(handle)
                if found is None:
                    waited_for.update(dict.fromkeys(self._queue.ended_since(name, mark)))
                    break
                waited_for[_trace_of(found)] = None
        finally:
            self._disarm(name, armed)
            self._queued.discard(handle)
            self._queue.leave(name, turn)
            self._queue.wake(name)  # the next in line looks again (busy: it waits on)
        waited_for.pop("", None)
        self.queued(handle, list(waited_for), int((self._clock() - started) * 1000))
        return None

    async def _supersede_remote(
        self,
        handle: StreamHandle,
        previous: str,
        waiter: asyncio.Future[None],
        armed: list[asyncio.Future[None]],
    ) -> bool:
        """Tell every process to cancel the session's older streams; wait (bounded) for
        the owner to release. True if the wait timed out."""
        name, prev_gen = handle.session, _gen_of(previous)
        owner_key = self._key("owner", name)
        await self._redis.publish(self._channel, f"cancel {name} {handle.generation}")
        loop = asyncio.get_running_loop()
        started = self._clock()
        deadline = loop.time() + self._cancel_wait
        current: str | None = previous
        while _gen_of(current) == prev_gen and not handle.cancel_requested:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            either: set[asyncio.Future[Any]] = {waiter, handle.cancelled}
            await asyncio.wait(either, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if waiter.done():
                waiter = self._arm(name, armed)  # re-armed before reading: no signal is missed
            current = _text(await self._redis.get(owner_key))
        if handle.cancel_requested:
            return False
        waited_ms = int((self._clock() - started) * 1000)
        if self._metrics is not None:
            self._metrics.cancel_wait.observe(waited_ms / 1000)
        finished = _gen_of(current) != prev_gen
        self._log.emit(
            Event.PREV_STREAM_FINISHED_CLEANLY if finished else Event.PREV_STREAM_TIMEOUT_ON_CANCEL,
            session=name,
            trace=handle.trace,
            prev_trace=_trace_of(previous),
            waited_ms=waited_ms,
        )
        if not finished and self._metrics is not None:
            self._metrics.cleanup_timeouts.inc()
        return not finished

    async def _fence_remote(self, handle: StreamHandle, previous: str) -> None:
        """The owner overran the wait: whichever process runs it fences it."""
        message = f"fence {handle.session} {_gen_of(previous)} {handle.trace}"
        await self._redis.publish(self._channel, message)

    def _arm(self, session: str, armed: list[asyncio.Future[None]]) -> asyncio.Future[None]:
        """A future the next `done` of `session` resolves; `armed` collects them for _disarm."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(session, set()).add(future)
        armed.append(future)
        return future

    def _disarm(self, session: str, armed: list[asyncio.Future[None]]) -> None:
        """Forget the futures one registration armed (resolved or not: nothing may pile up)."""
        waiters = self._waiters.get(session)
        if waiters is None:
            return
        waiters.difference_update(armed)
        if not waiters:
            del self._waiters[session]

    # -- releasing -----------------------------------------------------------------------

    def release(self, handle: StreamHandle) -> None:
        super().release(handle)
        if handle in self._owned:
            self._owned.discard(handle)
            task = asyncio.get_running_loop().create_task(self._release_remote(handle))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            releasing = self._releasing.setdefault(handle.session, set())
            releasing.add(task)
            task.add_done_callback(functools.partial(self._released, handle.session))

    def _released(self, session: str, task: asyncio.Task[Any]) -> None:
        releasing = self._releasing.get(session)
        if releasing is not None:
            releasing.discard(task)
            if not releasing:
                del self._releasing[session]

    async def _release_remote(self, handle: StreamHandle) -> None:
        gen, name = handle.generation, handle.session
        try:
            await self._release(
                keys=[self._key("owner", name)],
                args=[gen, self._channel, f"done {name} {gen}"],
            )
        except (RedisError, OSError) as exc:
            self._went_down("release", name, exc)  # the lease runs out instead

    # -- stop, from any process ----------------------------------------------------------

    async def stop_remote(self, session: str, stream_id: str) -> bool:
        """Stop `stream_id` if it is `session`'s registered stream, in whichever process
        runs it (a `stop` signal: that process cancels it `stop_requested`). False if the
        session's owner is another stream, or none."""
        owner = _text(await self._redis.get(self._key("owner", session)))
        if not owner or owner.split("|")[2:3] != [stream_id]:
            return False
        await self._redis.publish(self._channel, f"stop {session} {_gen_of(owner)}")
        return True

    # -- signals from every process ------------------------------------------------------

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        """Read the signal channel; on a lost connection, log it, retry, and say when back."""
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                if not ready.done():
                    ready.set_result(None)
                if self._down_since is not None:
                    self._came_back()
                    await self._reassert()
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        self._on_signal(str(message["data"]))
            except (RedisError, OSError) as exc:
                starting = not ready.done()
                if starting and not self.start_down_ok:
                    ready.set_exception(RegistryUnavailable(str(exc)))
                    return  # `start` raises: no listener for a registry that never started
                if starting:
                    ready.set_result(None)  # `start` goes on, down; this loop retries
                if self._down_since is None:
                    self._went_down("start" if starting else "listen", "", exc)
                await asyncio.sleep(0.5)  # the connection is down: retry twice a second
            finally:
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    await asyncio.wait_for(pubsub.aclose(), 1)

    def _on_signal(self, data: str) -> None:  # noqa: PLR0912 - one branch per signal kind
        kind, _, rest = data.partition(" ")
        name, _, rest = rest.partition(" ")
        gen_text, _, by_trace = rest.partition(" ")
        if not gen_text.isdigit():
            return
        gen = int(gen_text)
        slot = self._sessions.get(name)
        if kind == "done":
            for future in self._waiters.get(name, ()):
                if not future.done():
                    future.set_result(None)
        elif kind == "cancel" and slot is not None:
            for handle in list(slot.live):
                if 0 < handle.generation < gen:
                    self.cancel(handle, CancelReason.REGISTRY_NEW_STREAM)
        elif kind == "stop" and slot is not None:
            for handle in list(slot.live):
                if handle.generation == gen:
                    self.cancel(handle, CancelReason.STOP_REQUESTED)
        elif kind == "fence" and slot is not None:
            for handle in list(slot.live):
                if handle.generation == gen and not handle.done.done() and not handle.fenced:
                    handle.fence()
                    self._log.emit(
                        Event.STREAM_FENCED,
                        trace=handle.trace,
                        session=name,
                        stream_id=handle.stream_id,
                        by_trace=by_trace,
                    )

    # -- leases --------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Renew the leases of this process's owned sessions, a third of a lease apart, in
        batches (one script call each). While Redis is down, ask it twice a second whether
        it is back, so a process recovers even if its subscription never dropped."""
        while True:
            if self._down_since is not None:
                await asyncio.sleep(0.5)
                try:
                    await self._redis.ping()
                    self._came_back()
                    await self._reassert()
                except (RedisError, OSError):
                    pass
                continue
            await asyncio.sleep(self._lease_ms / 3000)
            owned = list(self._owned)
            try:
                for start in range(0, len(owned), _RENEW_BATCH):
                    batch = owned[start : start + _RENEW_BATCH]
                    keys = [self._key("owner", h.session) for h in batch]
                    await self._renew(
                        keys=keys, args=[*(h.generation for h in batch), self._lease_ms]
                    )
            except (RedisError, OSError) as exc:
                self._went_down("renew", "", exc)

    async def _reassert(self) -> None:
        """Back after an outage: claim again what this process still runs (its lease may
        have run out while Redis was away), never over a newer owner."""
        for handle in list(self._owned):
            value = f"{handle.generation}|{self._worker}|{handle.stream_id}|{handle.trace}"
            await self._claim(
                keys=[self._key("owner", handle.session)],
                args=[handle.generation, value, self._lease_ms, 0],
            )
