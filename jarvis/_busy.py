"""What a prompt does when its session is still streaming: the guard's `on_busy` policy.

`supersede` (the default) is the registry's own register: cancel, wait, start.
`reject` refuses the prompt at once (409, `Retry-After`) and leaves the running answer
alone; `queue` holds it, first come first served, until the session is free, at most
`queue_wait` seconds, then lets it register. Both decide *before* the prompt becomes a
stream, so a refused prompt is one `request_rejected` line and never a `stream_start`.
The registries run the policy (`Registry.admit`); this module holds what they share.
"""

from __future__ import annotations

import asyncio
from collections import deque

from .exceptions import SessionBusy
from .settings import OnBusy

SUPERSEDE: OnBusy = "supersede"
REJECT: OnBusy = "reject"
QUEUE: OnBusy = "queue"
#: Ended streams a session's line remembers for its waiters' `prev_trace` (the newest):
#: a session that never stops queueing must not grow a list without end.
ENDED_KEPT = 32
#: The `Retry-After` of a refusal, in whole seconds: the running answer's end is unknown,
#: and a second is long enough not to hammer the server, short enough for a chat user.
RETRY_AFTER_S = 1


def busy(session: str) -> SessionBusy:
    """The refusal of a prompt whose session streams, under `reject`."""
    return SessionBusy(
        f"session {session} is still answering its previous prompt; retry when it has finished",
        retry_after=RETRY_AFTER_S,
    )


def queue_timeout(session: str, waited_s: float) -> SessionBusy:
    """The refusal of a queued prompt whose session stayed busy for the whole queue wait."""
    return SessionBusy(
        f"session {session} was still answering its previous prompt after {waited_s:g} s "
        "in the queue; retry when it has finished",
        code="queue_timeout",
        retry_after=RETRY_AFTER_S,
    )


class SessionQueue:
    """The prompts of this process waiting for their sessions, first come first served.

    Each waiter holds a future; `wake(session)` resolves the first one's, which then
    looks whether the session is free and whether it is still first. Waking is a hint,
    never a hand-over: a woken waiter that finds the session busy takes a new future
    (`again`) and keeps its place.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        #: The streams of a session that ended while some of its prompts waited, in order
        #: (the newest ENDED_KEPT), and how many older ones were dropped: a waiter names
        #: those it waited for (`stream_queued prev_trace=`).
        self._ended: dict[str, list[str]] = {}
        self._dropped: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<SessionQueue sessions={len(self._waiting)} waiting={len(self)}>"

    def __len__(self) -> int:
        return sum(len(line) for line in self._waiting.values())

    def waiting(self, session: str) -> int:
        line = self._waiting.get(session)
        return 0 if line is None else len(line)

    def join(self, session: str) -> asyncio.Future[None]:
        """A place at the end of the session's line."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(session, deque()).append(turn)
        return turn

    def first(self, session: str, turn: asyncio.Future[None]) -> bool:
        line = self._waiting.get(session)
        return bool(line) and line[0] is turn  # type: ignore[index]

    def again(self, session: str, turn: asyncio.Future[None]) -> asyncio.Future[None]:
        """A fresh future in the place of a resolved one (woken, but not its turn yet)."""
        line = self._waiting[session]
        fresh: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line[line.index(turn)] = fresh
        return fresh

    def leave(self, session: str, turn: asyncio.Future[None]) -> None:
        line = self._waiting.get(session)
        if line is None:
            return
        if turn in line:
            line.remove(turn)
        if not line:
            del self._waiting[session]
            self._ended.pop(session, None)
            self._dropped.pop(session, None)

    def ended(self, session: str, trace: str) -> None:
        """A stream of `session` ended: remembered while some prompt of it waits."""
        if session not in self._waiting:
            return
        ended = self._ended.setdefault(session, [])
        ended.append(trace)
        if len(ended) > ENDED_KEPT:
            del ended[0]
            self._dropped[session] = self._dropped.get(session, 0) + 1

    def mark(self, session: str) -> int:
        """Where the session's list of ended streams stands (a waiter's starting point)."""
        return self._dropped.get(session, 0) + len(self._ended.get(session, ()))

    def ended_since(self, session: str, mark: int) -> list[str]:
        """The streams of `session` that ended since `mark` (the newest ENDED_KEPT)."""
        start = max(mark - self._dropped.get(session, 0), 0)
        return self._ended.get(session, [])[start:]

    def wake(self, session: str) -> None:
        """Tell the session's first waiter to look again."""
        line = self._waiting.get(session)
        if line and not line[0].done():
            line[0].set_result(None)
