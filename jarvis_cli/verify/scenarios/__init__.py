"""The scenarios, one module each; `RUNNABLE` maps a name to its coroutine.

`responsiveness` is not in it: it is judged from the prober that runs
through all the others (see `responsiveness.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..results import ScenarioResult
from .baseline import baseline
from .burst import burst
from .context import Context
from .disconnect import disconnect
from .hostile_input import hostile_input
from .isolation import isolation
from .leaks import leaks
from .overlap import overlap
from .responsiveness import responsiveness
from .resume import resume
from .slow_reader import slow_reader
from .work_stops import work_stops

Scenario = Callable[[Context], Awaitable[ScenarioResult]]

RUNNABLE: dict[str, Scenario] = {
    "baseline": baseline,
    "work_stops": work_stops,
    "overlap": overlap,
    "burst": burst,
    "isolation": isolation,
    "disconnect": disconnect,
    "slow_reader": slow_reader,
    "hostile_input": hostile_input,
    "resume": resume,
    "leaks": leaks,
}

__all__ = ["RUNNABLE", "Context", "Scenario", "responsiveness"]
