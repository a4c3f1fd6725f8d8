"""Bounded-memory percentiles: a log-bucket histogram accurate to about 1%."""

from __future__ import annotations

import math
from collections import Counter

_GROWTH = math.log(1.02)


class Percentiles:
    """Counts values into buckets 2% wide, so memory does not grow with the input."""

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0
        self.max = 0.0

    def add(self, value: float) -> None:
        if not value > 0.0:  # negatives and NaN count as 0, as max(0.0, value) did
            value = 0.0
        self._buckets[int(math.log1p(value) / _GROWTH)] += 1
        self.count += 1
        self.max = max(self.max, value)

    def quantile(self, q: float) -> float:
        """The value at quantile `q` (0..1), to bucket precision; 0 when empty."""
        if not self.count:
            return 0.0
        rank = q * (self.count - 1)
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen > rank:
                return min(self.max, math.expm1((bucket + 0.5) * _GROWTH))
        return self.max

    def summary(self) -> dict[str, float]:
        return {
            "count": self.count,
            "p50": round(self.quantile(0.5), 1),
            "p99": round(self.quantile(0.99), 1),
            "max": round(self.max, 1),
        }
