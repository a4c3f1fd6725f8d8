"""Resume: each stream's SSE events as sent, numbered, kept for a reload or a second tab.

Every event of a guarded SSE stream carries `id: N`, its place in the stream (1, 2,
3, ..., the end marker too), so a client that lost its connection says where it was
with `Last-Event-ID` and gets exactly the rest. With resume on
(`StreamGuard(resume_ttl=...)`) the emitter hands each flush's events to the
stream's `Journal` once they are settled (on the wire, or the wire gone), never
before: a write cut short takes its ids back and the batch is sent again under the
same ids, so no reader sees an event twice. A `MemoryReplay` keeps the journals of
this process while their streams run and `resume_ttl` seconds after;
`RedisReplay` (`jarvis._redis_replay`) also writes them to Redis, so that any
process of a fleet can serve a resume.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._followers import Followers
from ._stream import StreamHandle

if TYPE_CHECKING:
    from ._resume import Tail

#: Written to a journal's mirror: the journal, the events just appended, whether it ended.
Mirror = Callable[["Journal", list[bytes], bool], None]
#: What an event costs beside its bytes: the bytes object's header and its list slot.
_EVENT_OVERHEAD = sys.getsizeof(b"") + 8
#: What a journal costs with no event, about: itself, its list and ids, the store's two
#: dict entries, its TTL timer. A flood of one-event answers is bounded by the cap too.
_JOURNAL_OVERHEAD = 700


def number_events(body: bytes, first: int) -> tuple[bytes, list[bytes]]:
    """`body` (an encoder's bytes: events that each end with a blank line) with `id: N`
    put first in each event, numbered from `first`; and the numbered events one by one.

    Bytes after the last blank line (an encoder that ends a write mid-event) count as
    an event of their own, so that event N is always the journal's N-th entry.
    """
    end = len(body) - 2
    if end >= 0 and body.find(b"\n\n") == end:  # one event: every built-in encoder's chunk
        event = b"id: %d\n%b" % (first, body)
        return event, [event]
    events: list[bytes] = []
    start = 0
    while start < len(body):
        cut = body.find(b"\n\n", start)
        stop = len(body) if cut < 0 else cut + 2
        events.append(b"id: %d\n%b" % (first + len(events), body[start:stop]))
        start = stop
    return b"".join(events), events


class Journal:
    """One stream's numbered events, as its readers may replay them.

    `events[n]` is the event whose id is n + 1. `ended` turns true once the stream's
    `finally` has written its last byte (or was fenced and wrote none): a reader that
    has everything then stops following.
    """

    __slots__ = (
        "__weakref__",  # a test sees a journal the cap forgot is freed, not held
        "_changed",
        "ended",
        "events",
        "followers",
        "mirror",
        "session",
        "size",
        "stream_id",
        "trace",
    )

    def __init__(self, session: str, stream_id: str, trace: str) -> None:
        self.session = session
        self.stream_id = stream_id
        self.trace = trace
        self.events: list[bytes] = []
        #: About what the journal holds in memory, in bytes: its events (each with its
        #: overhead) and itself.
        self.size = _JOURNAL_OVERHEAD
        self.ended = False
        #: Who reads the stream while it runs (`Followers`); None once it has ended.
        self.followers: Followers | None = None
        #: Also told of every append and of the end: the fleet's store writes them to Redis.
        self.mirror: Mirror | None = None
        self._changed: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        state = "ended" if self.ended else "live"
        return f"<Journal {self.stream_id} {state} events={len(self.events)}>"

    @property
    def last_id(self) -> int:
        """The id of the last event so far (0: none yet)."""
        return len(self.events)

    def append(self, events: list[bytes]) -> None:
        """Events that are settled: on the wire, or the wire is gone."""
        if self.ended or not events:
            return
        self.events.extend(events)
        self.size += sum(map(len, events)) + _EVENT_OVERHEAD * len(events)
        if self.mirror is not None:
            self.mirror(self, events, False)
        self._wake()

    def end(self) -> None:
        """The stream wrote its last event: readers stop once they have everything."""
        if self.ended:
            return
        self.ended = True
        self.followers = None
        if self.mirror is not None:
            self.mirror(self, [], True)
        self._wake()

    def changed(self) -> asyncio.Future[None]:
        """Resolved at the next append or at the end (a reader awaits it, bounded)."""
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    def _wake(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)


class MemoryReplay:
    """This process's journals: kept while their streams run, and `ttl` seconds after.

    `max_bytes` bounds what the ended ones hold: past it, the oldest ended are forgotten
    before their `ttl` (a resume of one is then a 404, as after the ttl). A running
    stream's journal is never dropped, since a reader may need any of it; what the
    running streams hold is bounded by the answers themselves.
    """

    def __init__(self, ttl: float, max_bytes: int | None = None) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._journals: dict[str, Journal] = {}
        #: The ended journals still kept, oldest end first, each with the timer that
        #: forgets it (cancelled when the cap forgets it first: the timer holds it).
        self._ended: dict[str, tuple[Journal, asyncio.TimerHandle]] = {}
        self.ended_bytes = 0
        #: Ended journals forgotten before their ttl, to keep within `max_bytes`.
        self.evicted = 0

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} journals={len(self._journals)} ttl={self.ttl:g}s "
            f"ended_bytes={self.ended_bytes}>"
        )

    def __len__(self) -> int:
        return len(self._journals)

    async def start(self) -> None:
        """Nothing to connect to: the fleet's store connects here."""

    async def stop(self) -> None:
        """Nothing to disconnect."""

    # What only a fleet's store can know (`RedisReplay`); one process knows nothing more.

    async def remote_tail(self, session: str, stream_id: str, after: int) -> Tail | None:
        """A reader of a stream another process runs or ran: there is none."""
        return None

    async def remote_status(self, session: str, stream_id: str) -> str | None:
        """`ended` or `live` for a stream of another process: there is none."""
        return None

    async def following(self, handle: StreamHandle) -> bool:
        """Whether a reader in another process follows the stream: none can."""
        return False

    def open(self, handle: StreamHandle) -> Journal:
        """The journal of a stream that is starting."""
        journal = Journal(handle.session, handle.stream_id, handle.trace)
        self._journals[handle.stream_id] = journal
        return journal

    def find(self, stream_id: str) -> Journal | None:
        """The journal of a stream this process ran, while it is kept."""
        return self._journals.get(stream_id)

    def close(self, journal: Journal) -> None:
        """The stream is over: end its journal, and forget it `ttl` seconds from now (or
        sooner, oldest first, once the ended journals hold more than `max_bytes`)."""
        journal.end()
        if self._journals.get(journal.stream_id) is not journal:
            return
        timer = asyncio.get_running_loop().call_later(self.ttl, self._drop, journal)
        self._ended[journal.stream_id] = (journal, timer)
        self.ended_bytes += journal.size
        while self._ended and self.max_bytes is not None and self.ended_bytes > self.max_bytes:
            oldest, timer = next(iter(self._ended.values()))
            timer.cancel()  # a cancelled timer lets go of its journal
            self._drop(oldest)
            self.evicted += 1

    def forget(self, journal: Journal) -> None:
        """A prompt refused before it streamed (409, 503): end its journal (a fleet's
        copy then expires with the ttl) and forget it now, since no client was given its
        stream id to resume."""
        journal.end()
        self._drop(journal)

    def _drop(self, journal: Journal) -> None:
        if self._journals.get(journal.stream_id) is journal:
            del self._journals[journal.stream_id]
        kept = self._ended.get(journal.stream_id)
        if kept is not None and kept[0] is journal:
            del self._ended[journal.stream_id]
            self.ended_bytes -= journal.size
