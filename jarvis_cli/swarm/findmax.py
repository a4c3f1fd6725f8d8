"""`jarvis swarm --find-max`: the largest number of interrupting users that still meets the
thresholds, found by short swarms at growing user counts.

The search doubles the users from a start until a level crosses a threshold (or the
ceiling passes), then bisects between the last level that held and the first that did not,
until they are within a tenth of each other or four bisections were made. Each level is one
ordinary, bounded swarm, so the number of levels and the time are bounded: at most
log2(ceiling / start) + 1 doublings and four bisections.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .curve import Level

#: Bisection stops when the failing and the passing level are this close (share of the pass).
PRECISION = 0.1
#: And after this many bisections, however far apart.
MAX_BISECTIONS = 4


class Phase(enum.Enum):
    DOUBLING = "doubling"
    BISECTING = "bisecting"
    DONE = "done"


@dataclass(slots=True)
class Search:
    """Which user count to swarm next, from the verdicts so far. Pure: no I/O, no clock.

    `next()` is the level to run (None when done); `record(users, passed)` is its verdict.
    """

    start: int
    ceiling: int
    phase: Phase = Phase.DOUBLING
    #: The largest level that held, and the smallest that did not.
    passed: int | None = None
    failed: int | None = None
    bisections: int = 0
    _pending: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.start <= self.ceiling:
            raise ValueError(f"need 1 <= start <= ceiling, not {self.start}, {self.ceiling}")

    def __repr__(self) -> str:
        return (f"<Search {self.phase.value} passed={self.passed} failed={self.failed} "
                f"bisections={self.bisections}>")  # fmt: skip

    def next(self) -> int | None:
        """The user count to run now (the same until its verdict is recorded)."""
        if self.phase is Phase.DONE:
            return None
        if self._pending is None:
            self._pending = self._choose()
        return self._pending

    def _choose(self) -> int:
        if self.phase is Phase.DOUBLING:
            return self.start if self.passed is None else min(2 * self.passed, self.ceiling)
        assert self.passed is not None
        assert self.failed is not None
        return (self.passed + self.failed) // 2

    def record(self, users: int, passed: bool) -> None:
        """The verdict of the level `next()` gave."""
        if users != self._pending:
            raise ValueError(f"recorded {users} users, but the level to run is {self._pending}")
        self._pending = None
        if self.phase is Phase.BISECTING:
            self.bisections += 1
        if passed:
            self.passed = users
        else:
            self.failed = users
        self.phase = self._after()

    def _after(self) -> Phase:
        if self.passed is None:
            return Phase.DONE  # even the first level failed
        if self.failed is None:
            return Phase.DONE if self.passed >= self.ceiling else Phase.DOUBLING
        close = self.failed - self.passed <= max(1, math.ceil(self.passed * PRECISION))
        if close or self.bisections >= MAX_BISECTIONS:
            return Phase.DONE
        return Phase.BISECTING

    @property
    def most_levels(self) -> int:
        """An upper bound on the levels this search runs."""
        doublings = math.ceil(math.log2(self.ceiling / self.start)) + 1
        return doublings + MAX_BISECTIONS


async def find_max(
    search: Search,
    run_level: Callable[[int], Awaitable[Level]],
    progress: Callable[[int, Level], None],
) -> list[Level]:
    """Run the levels the search asks for, in order; every level, as measured."""
    levels: list[Level] = []
    while (users := search.next()) is not None:
        level = await run_level(users)
        search.record(users, level.passed)
        levels.append(level)
        progress(len(levels), level)
    return levels
