"""Which loops read logfmt: the C ones (`_hotscan.c`) where they were built, else Python.

`JARVIS_DIAGNOSE_PURE=1` forces the Python loops, the reference the C ones are tested
against; an install without a C compiler has only those.
"""

from __future__ import annotations

import os
from collections.abc import Callable

#: Set to 1 to run the Python loops even where the C ones are built.
PURE_ENV = "JARVIS_DIAGNOSE_PURE"


def _load() -> tuple[Callable[..., tuple[int, int]], Callable[[bytes, int, int], int]] | None:
    try:
        from ._hotscan import count_lines, feed_logfmt
    except ImportError:  # installed without a C compiler
        return None
    return feed_logfmt, count_lines


_LOADED = _load()
#: `_hotscan.feed_logfmt` (flushes.feed_logfmt_python in C), or None.
C_FEED_LOGFMT = _LOADED[0] if _LOADED else None
#: `_hotscan.count_lines` (bytes.count(b"\n") at memchr speed), or None.
C_COUNT_LINES = _LOADED[1] if _LOADED else None
#: The engines this install can run: "c" only where the extension was compiled.
ENGINES: tuple[str, ...] = ("c", "python") if _LOADED else ("python",)


def default_engine() -> str:
    """ "c" where built, unless JARVIS_DIAGNOSE_PURE is set (to anything but 0)."""
    if _LOADED is None or os.environ.get(PURE_ENV, "") not in ("", "0"):
        return "python"
    return "c"
