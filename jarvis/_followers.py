"""Who reads a running stream, and the grace a stream gets once nobody does.

With resume on, a disconnect is not a Stop: the answer runs on for `detach_grace`
seconds after its last reader left (its own connection, or any resumed one), and a
resume reattaches. If nobody has come back by then, the stream is cancelled as a
disconnect is with resume off (`reason=client_disconnected`). In a fleet, a reader
may follow the stream from another process: `remote` asks whether one does, and a
live remote reader keeps the stream going a grace at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ._stream import StreamHandle, StreamState
from .eventlog import EventSink
from .vocabulary import Event

#: Asked when the grace runs out: does a reader in another process follow the stream?
RemoteReaders = Callable[[StreamHandle], Awaitable[bool]]


class Followers:
    """The readers of one running stream; at zero, the grace before it is cancelled.

    Starts at one: the stream's own connection. `join` and `leave` count resumed
    readers in this process; `leave` at zero logs `stream_detached` and arms the grace
    timer, `join` disarms it. `cancel` is how the stream is stopped when the grace runs
    out (`registry.cancel(handle, CLIENT_DISCONNECTED)`).
    """

    def __init__(
        self,
        handle: StreamHandle,
        *,
        grace: float,
        cancel: Callable[[], object],
        log: EventSink,
        remote: RemoteReaders,
    ) -> None:
        self.handle = handle
        self.count = 1
        self._grace = grace
        self._cancel = cancel
        self._log = log
        self._remote = remote
        self._timer: asyncio.TimerHandle | None = None
        self._check: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        waiting = " grace" if self._timer is not None else ""
        return f"<Followers {self.handle.stream_id} count={self.count}{waiting}>"

    @property
    def detached(self) -> bool:
        """Nobody reads the stream now (it runs on within its grace)."""
        return self.count == 0

    def join(self) -> None:
        """A resumed reader follows the stream: no grace runs while it does."""
        self.count += 1
        self._disarm()

    def leave(self) -> None:
        """A reader (the stream's own connection, or a resumed one) went away."""
        self.count = max(0, self.count - 1)
        h = self.handle
        if self.count or h.state >= StreamState.STOPPING or h.cancel_requested:
            return
        self._log.emit(
            Event.STREAM_DETACHED,
            trace=h.trace,
            session=h.session,
            stream_id=h.stream_id,
            grace_ms=int(self._grace * 1000),
        )
        self._arm()

    def close(self) -> None:
        """The stream ended: no grace is left to run."""
        self._disarm()
        if self._check is not None:
            self._check.cancel()
            self._check = None

    def _arm(self) -> None:
        self._disarm()
        if self._grace <= 0:
            self._expired()
            return
        self._timer = asyncio.get_running_loop().call_later(self._grace, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.count or self.handle.state >= StreamState.STOPPING:
            return
        self._check = asyncio.get_running_loop().create_task(self._ask_remote())

    async def _ask_remote(self) -> None:
        """Another process's reader keeps the stream going for one more grace; none, or
        no answer, cancels it (in one process nobody else can follow)."""
        try:
            following = await self._remote(self.handle)
        except Exception:  # the store does not answer: nobody is known to follow
            following = False
        self._check = None
        if self.count or self.handle.state >= StreamState.STOPPING:
            return
        if following:
            self._timer = asyncio.get_running_loop().call_later(self._grace, self._expired)
        else:
            self._cancel()
