"""Hold a page to its byte budget: the caps of `record.py` keep it near, this makes sure.

Ids are what make a page heavy (UUID sessions, long traces), and the caps count items,
not bytes. So after the data is built, while its JSON is over `BUDGET_BYTES`, the page
gives up detail in the order it matters least, and says each step in its notes:
density in wider bins, then cleanup markers, then the other markers, then bars, keeping
those a finding names and those still open at the end (a hang), to the last.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from .record import OTHER_LANE

#: The page's data, at most (the page's script and styles add about 30 kB).
BUDGET_BYTES = 4_800_000
#: How many times density bins may be doubled before other detail goes.
MAX_DENSITY_MERGES = 4

Data = dict[str, Any]


def size_of(data: Data) -> int:
    return len(
        json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace")
    )


def fit(data: Data, budget: int = BUDGET_BYTES) -> Data:
    """Reduce `data` in place until its JSON fits `budget` bytes (or nothing is left to
    give up); each step taken is added to `data["notes"]`."""
    steps: list[Callable[[Data], str | None]] = [_coarser_density] * MAX_DENSITY_MERGES
    steps += [_drop_markers({"cleanup"}), _drop_markers(None)]
    steps += [_halve_bars, _fold_density, _drop_unused_lanes] * 12
    said: dict[str, str] = {}  # a step taken again says only its last word
    for step in steps:
        if size_of(data) <= budget:
            break
        note = step(data)
        if note:
            said[step.__name__] = note
    data["notes"] += [f"to stay within about {budget / 1e6:.1f} MB, {n}" for n in said.values()]
    data.pop("_bars_dropped", None)
    data.pop("_lanes_dropped", None)
    return data


def _coarser_density(data: Data) -> str | None:
    density = data["density"]
    if not density["n"]:
        return None
    merged: Counter[tuple[int, int]] = Counter()
    for lane, number, count in zip(density["lane"], density["bin"], density["n"], strict=True):
        merged[lane, number // 2] += count
    density["bin_ms"] = density["bin_ms"] * 2
    set_density(density, merged)
    return f"flush density is drawn in bins of {density['bin_ms'] / 1000:g} s"


def _drop_markers(kinds: set[str] | None) -> Callable[[Data], str | None]:
    def drop_markers(data: Data) -> str | None:
        markers = data["markers"]
        names = data["kinds"]
        keep = [
            i
            for i, kind in enumerate(markers["kind"])
            if kinds is not None and names[kind] not in kinds
        ]
        dropped = len(markers["kind"]) - len(keep)
        if not dropped:
            return None
        for key in markers:
            markers[key] = [markers[key][i] for i in keep]
        what = "cleanup markers are" if kinds is not None else "more markers are"
        return f"{dropped:,} {what} not drawn"

    drop_markers.__name__ += "_" + ("_".join(sorted(kinds)) if kinds else "all")
    return drop_markers


def _halve_bars(data: Data) -> str | None:
    """Keep half the bars: those findings name and those never ended first."""
    bars = data["bars"]
    total = len(bars["lane"])
    if total < 2:
        return None
    named = {i for finding in data["findings"] for i in finding["bars"]}
    kept = sorted(named | {i for i, end in enumerate(bars["end"]) if end < 0})
    room = max(0, total // 2 - len(kept))
    others = [i for i in range(total) if i not in set(kept)]
    kept = sorted({*kept, *others[:room]})
    if len(kept) == total:
        return None
    new_index = {old: new for new, old in enumerate(kept)}
    for key in bars:
        bars[key] = [bars[key][i] for i in kept]
    markers = data["markers"]
    mine = [i for i, bar in enumerate(markers["bar"]) if bar < 0 or bar in new_index]
    for key in markers:  # a dropped bar's markers go with it
        markers[key] = [markers[key][i] for i in mine]
    markers["bar"] = [new_index.get(bar, -1) for bar in markers["bar"]]
    for finding in data["findings"]:
        finding["bars"] = [new_index[i] for i in finding["bars"] if i in new_index]
    dropped = data.setdefault("_bars_dropped", 0) + total - len(kept)
    data["_bars_dropped"] = dropped
    return f"{dropped:,} bars are not drawn (those findings name and those never ended are)"


def _drop_unused_lanes(data: Data) -> str | None:
    """Lanes with nothing left to draw in them go (their sessions' names are weight)."""
    used = {*data["bars"]["lane"], *data["markers"]["lane"], *data["density"]["lane"]}
    used |= {finding["lane"] for finding in data["findings"] if finding["lane"] >= 0}
    lanes = data["lanes"]
    if len(used) == len(lanes):
        return None
    kept = sorted(used)
    new_index = {old: new for new, old in enumerate(kept)}
    data["lanes"] = [lanes[i] for i in kept]
    for part in (data["bars"], data["markers"], data["density"]):
        part["lane"] = [new_index[i] for i in part["lane"]]
    for finding in data["findings"]:
        finding["lane"] = new_index.get(finding["lane"], -1)
    dropped = data.setdefault("_lanes_dropped", 0) + len(lanes) - len(kept)
    data["_lanes_dropped"] = dropped
    return f"{dropped:,} lanes left with nothing to draw are not drawn"


def _fold_density(data: Data) -> str | None:
    """The density of lanes with no bar left goes to one lane of its own."""
    density = data["density"]
    barred = set(data["bars"]["lane"]) | {f["lane"] for f in data["findings"]}
    lanes = data["lanes"]
    if OTHER_LANE not in lanes:
        lanes.append(OTHER_LANE)
    other = lanes.index(OTHER_LANE)
    if all(lane in barred or lane == other for lane in density["lane"]):
        return None
    merged: Counter[tuple[int, int]] = Counter()
    for lane, number, count in zip(density["lane"], density["bin"], density["n"], strict=True):
        merged[lane if lane in barred else other, number] += count
    set_density(density, merged)
    return f"the flush density of streams without a bar is drawn in '{OTHER_LANE}'"


def set_density(density: Data, cells: Counter[tuple[int, int]]) -> None:
    """Write (lane, bin) -> count cells back as the page's columns, in order."""
    density["lane"], density["bin"], density["n"] = [], [], []
    for (lane, number), count in sorted(cells.items()):
        density["lane"].append(lane)
        density["bin"].append(number)
        density["n"].append(count)
