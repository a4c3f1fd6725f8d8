"""One stream per session, race-free: a generation fence, so only the newest prompt of a
burst registers; every older waiter learns it was superseded before it streamed a token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ._synth import CANCEL_WAIT_S


@dataclass
class _Slot:
    generation: int = 0
    cancel: asyncio.Event | None = None
    done: asyncio.Event | None = None


class Sessions:
    """`async with sessions.turn(sid) as cancel:`; `cancel` is set when a newer prompt
    arrives, and is None when one arrived while this prompt waited its turn."""

    def __init__(self, *, cancel_wait: float = CANCEL_WAIT_S) -> None:
        self._slots: dict[str, _Slot] = {}
        self._cancel_wait = cancel_wait

    @contextlib.asynccontextmanager
    async def turn(self, session: str | None) -> AsyncIterator[asyncio.Event | None]:
        if session is None:
            yield asyncio.Event()
            return
        slot = self._slots.setdefault(session, _Slot())
        slot.generation += 1
        mine = slot.generation
        if slot.cancel is not None:
            slot.cancel.set()
        if slot.done is not None:
            # Bounded: a stream that ignores its cancel cannot block the session for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._cancel_wait):
                    await slot.done.wait()
        if slot.generation != mine:
            yield None
            return
        cancel, done = asyncio.Event(), asyncio.Event()
        slot.cancel, slot.done = cancel, done
        try:
            yield cancel
        finally:
            done.set()
            if slot.cancel is cancel:
                slot.cancel = slot.done = None
            if slot.generation == mine:
                del self._slots[session]
