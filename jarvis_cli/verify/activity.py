"""Slow is not hung: when the server last delivered a byte, and the idle-gap rule.

A request is hung when no byte has arrived on it for the idle bound (`--deadline`)
and none has arrived on any other stream of the run either: a stream that waits
its turn in a server's queue while other streams move is queued, not hung, and a
stream that keeps delivering bytes, however slowly, is slow. Every wait still has
a bound: a queue drains or the whole server goes quiet, and the scenario's budget
is the last resort.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: How long a cancelled read may take to let go.
CANCEL_GRACE_S = 1.0


class Activity:
    """When a byte last arrived on any of the run's streams (the response head too)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.last: float = -math.inf

    def __repr__(self) -> str:
        since = "never" if self.last == -math.inf else f"{self._clock() - self.last:.3f}s ago"
        return f"<Activity last byte {since}>"

    def saw(self, at: float | None = None) -> None:
        """A byte arrived (now, or at `at`)."""
        self.last = max(self.last, self._clock() if at is None else at)

    def quiet_for(self, now: float | None = None) -> float:
        """Seconds since any stream of the run received a byte."""
        return (self._clock() if now is None else now) - self.last


async def until_idle(
    work: Awaitable[T],
    *,
    idle: float,
    own_last: Callable[[], float],
    activity: Activity,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[bool, T | None]:
    """Run `work` to its end, unless neither it (`own_last`: when its last byte came) nor
    any other stream (`activity`) received a byte for `idle` seconds: then cancel it.

    Returns (hung, result): (False, its result), or (True, None) when it was cancelled
    for being idle. An exception of `work` propagates."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            quiet = clock() - max(own_last(), activity.last)
            if quiet >= idle:
                task.cancel()
                await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
                if task.done() and not task.cancelled() and task.exception() is None:
                    return False, task.result()  # it finished as it was being cancelled
                return True, None
            done, _ = await asyncio.wait({task}, timeout=idle - quiet)
            if done:
                return False, task.result()
    finally:
        if not task.done():
            task.cancel()  # we were cancelled ourselves: take the read with us
