"""Summaries of measured durations: exact quantiles over the small samples a run takes.

`jarvis_cli/logs/stats.Percentiles` trades 2% precision for bounded memory over
gigabytes of log; a verify run measures hundreds of values, so it keeps them all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def quantile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q` quantile (0..1) of `values`; 0.0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(seconds: Iterable[float]) -> dict[str, float]:
    """count, p50, p99 and max of durations given in seconds, reported in milliseconds."""
    values = list(seconds)
    return {
        "count": len(values),
        "p50_ms": round(quantile(values, 0.5) * 1000, 1),
        "p99_ms": round(quantile(values, 0.99) * 1000, 1),
        "max_ms": round(max(values, default=0.0) * 1000, 1),
    }
