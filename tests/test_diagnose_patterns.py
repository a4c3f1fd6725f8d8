"""Line timestamps: the cached `line_ts` gives exactly what parsing each stamp gives."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator

import pytest

from jarvis_cli.logs import patterns
from jarvis_cli.logs.patterns import line_ts, parse_ts

# line_ts as it was before the per-second cache: the definition the cache must meet.
_STAMP = re.compile(
    rb"^(?:ts=)?\"?(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
)


def parsed_line_ts(line: bytes) -> float | None:
    match = _STAMP.match(line[:48])
    return parse_ts(match.group(1)) if match else None


def random_line(rng: random.Random) -> bytes:
    """A line starting with a stamp, valid or not: odd dates and hours, any fraction
    length, separators, zones, quotes, sometimes cut short by the 48-byte window."""
    year = rng.choice((1969, 1970, 2024, 2026, 2038, 9999))
    month, day = rng.choice(((2, 29), (3, 29), (3, 30), (10, 25), (12, 31), (13, 1), (0, 9)))
    hour = rng.choice((0, 1, 2, 3, 23, 24, 25))
    stamp = f"{year:04d}-{month:02d}-{day:02d}{rng.choice('T ')}{hour:02d}:"
    stamp += f"{rng.choice((0, 30, 59, 60)):02d}:{rng.choice((0, 1, 59, 60)):02d}"
    if rng.random() < 0.8:
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 26)))
        stamp += rng.choice(".,") + digits
    stamp += rng.choice(("", "", "Z", "+01:00", "-0530", "+23:59", "+24:00", "+0", "x"))
    head = rng.choice(("ts=", 'ts="', "", '"'))
    return (head + stamp + rng.choice((" level=info", '" event=x', ""))).encode()


@pytest.fixture(params=["UTC", "Europe/Paris", "America/St_Johns"])
def local_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Naive stamps are local time: run under zones with DST and half-hour offsets."""
    monkeypatch.setenv("TZ", str(request.param))
    time.tzset()
    patterns._SECONDS.clear()  # cached local seconds belong to one zone
    yield str(request.param)
    monkeypatch.undo()
    time.tzset()
    patterns._SECONDS.clear()


def test_cached_line_ts_equals_parsing_every_stamp(local_zone: str) -> None:
    """20,000 random stamps: the per-second cache returns the very same float (or None)
    as fromisoformat().timestamp() on the whole stamp, first time and cached."""
    rng = random.Random(local_zone)
    lines = [random_line(rng) for _ in range(20_000)]
    for _ in range(2):
        for line in lines:
            assert line_ts(line, 0) == parsed_line_ts(line), line
    assert sum(parsed_line_ts(line) is not None for line in lines) > 3_000


def test_line_ts_reads_at_a_line_start_inside_a_buffer() -> None:
    """The offset is a line start inside a larger buffer, as the scanner passes it."""
    buffer = b"junk\nts=2026-01-26T10:00:00.25Z level=info event=stream_start\n"
    assert line_ts(buffer, 5) == 1769421600.25
    assert line_ts(buffer, 0) is None
