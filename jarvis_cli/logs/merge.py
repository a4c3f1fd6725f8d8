"""Several independent inputs (one per worker or host) read as one log, in timestamp order.

Each input (a file, or one file's rotated set) is in time order already, so a k-way
merge keeps memory bounded: a heap of per-input cursors, keyed by the timestamp of
each cursor's next line. A step takes, from the earliest input, the longest run of
lines not later than any other input's next line (found by galloping over the
bytes, a few timestamp reads per run) and hands that run, whole lines contiguous in
one file, to the `Scanner.scan_chunk` a single file goes through, C hot loop
included. A line without a timestamp stays right after the line before it in its
file; equal timestamps go to the input named first.
"""

from __future__ import annotations

import heapq
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable

from .scan import CHECKPOINT_EVERY, Scanner, sniff, time_at
from .sources import Source, Sources

#: Bytes of one input read at a time (whole lines): what each cursor holds.
BLOCK = 1 << 20
#: How far (in lines) a probe looks for a timestamp before it counts as "no time here":
#: such a stretch (a long traceback, say) stays with the lines before it.
LOOKAHEAD_LINES = 64
#: The first gallop step, in bytes, before an input's runs tell how long they are.
FIRST_STEP = 512
#: jarvis's own stamp (`ts=2026-11-30T06:00:00.123456Z`): two of them compare as bytes
#: in time order, at a fraction of the cost of parsing both.
_JARVIS_STAMP = re.compile(rb"ts=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)")

#: One file's part of an input: the source and the byte range to read.
Part = tuple[Source, int, int]
#: Where a run must stop: the next input's head (timestamp, input order, jarvis stamp).
Bound = tuple[float, int, bytes | None]


class _Cursor:
    """Where one input is: its current file, a block of whole lines, the offset in it."""

    __slots__ = (
        "block", "dialect", "end", "last_run", "last_ts", "line", "next_checkpoint", "off",
        "order", "parts", "pos", "source",
    )  # fmt: skip

    def __init__(self, order: int, parts: Iterable[Part]) -> None:
        self.order = order
        self.parts = deque(parts)
        #: The latest timestamp read in this input: a line without one sorts with it.
        self.last_ts = -math.inf
        self.block = b""
        self.off = 0
        self.source: Source | None = None
        self.dialect = ""
        self.pos = self.end = self.line = self.next_checkpoint = 0
        #: The length of the last run cut short: the next is likely as long.
        self.last_run = FIRST_STEP
        self._next_part()

    @property
    def live(self) -> bool:
        return self.source is not None

    def head(self) -> float:
        """The sort key of the next line: its timestamp, else the last one before it."""
        ts = time_at(self.block, self.off)
        return self.last_ts if ts is None else ts

    def stamp(self) -> bytes | None:
        """The next line's stamp as jarvis writes it, if it is one."""
        match = _JARVIS_STAMP.match(self.block, self.off)
        return None if match is None else match[1]

    def _next_part(self) -> None:
        while self.parts:
            source, start, end = self.parts.popleft()
            self.source, self.pos, self.end = source, start, end
            self.dialect = sniff(source.read(start, min(end, start + (1 << 16))))
            self.line = 1 + (source.count_lines(0, start) if start else 0)
            self.next_checkpoint = start
            if self._fill():
                return
        self.source = None

    def _fill(self) -> bool:
        """Read the next block of whole lines at `pos`; False at the end of the part."""
        source = self.source
        assert source is not None
        pos, end = self.pos, self.end
        if pos >= end:
            return False
        block = source.read_lines(pos, end, BLOCK)
        self.block, self.off = block, 0
        return bool(block)

    def feed(self, scanner: Scanner, bound: Bound | None) -> int:
        """Feed the run of lines that sort before `bound` (all that is left when None);
        return the bytes fed. The cursor is then at its next line, or not live."""
        block, off = self.block, self.off
        cut = len(block) if bound is None else self._run_end(block, off, bound)
        chunk = block[off:cut]
        source = self.source
        assert source is not None
        at = self.pos + off
        if at >= self.next_checkpoint:  # line numbers are resolved from these at the end
            source.checkpoint(at, self.line)
            self.next_checkpoint = at + CHECKPOINT_EVERY
        scanner.scan_chunk(source, self.dialect, chunk, at)
        lines = chunk.count(b"\n")
        self.line += lines
        scanner.coverage.lines += lines
        if cut < len(block):
            self.off = cut
            self.last_run = cut - off
            return len(chunk)
        self.last_ts = _last_stamp(block, self.last_ts)
        self.pos += len(block)
        if not self._fill():
            self._next_part()
        return len(chunk)

    def _run_end(self, block: bytes, off: int, bound: Bound) -> int:
        """Where the run from `off` ends: the first timestamped line after `bound`, with
        the lines without a timestamp before it; `len(block)` if none in this block.

        The line at `off` is in the run (it sorted first). First a guess: the run is
        as long as the last one (two probes, the line there and the one before it).
        Else gallop (doubling) to a probe that ends it, then bisect.
        """
        n = len(block)
        stop = self._stopper(block, off, n, bound)
        if stop >= 0:
            return stop  # lines without a timestamp, then a later line of this input
        lo, hi, step = off, n, self.last_run
        guess = _line_at_or_after(block, off + step, n)
        found = self._stopper(block, guess, n, bound) if guess < n else -1
        if found >= 0:  # the run ends at or before the guess
            before = block.rfind(b"\n", off, guess - 1) + 1
            earlier = self._stopper(block, before, n, bound) if before > off else -1
            if earlier < 0:
                return found  # the guess was right: the line before it is in the run
            hi, stop = before, earlier
        else:
            if guess < n:
                lo = guess
            while True:  # gallop: the run goes on at least to lo
                probe = _line_at_or_after(block, lo + step, n)
                if probe >= n:
                    hi, stop = n, n
                    break
                stop = self._stopper(block, probe, n, bound)
                if stop >= 0:
                    hi = probe
                    break
                lo, step = probe, step * 2
        while True:  # the line at lo is in the run, the one at hi (or the end) is not
            mid = (lo + hi) // 2
            newline = block.rfind(b"\n", lo, mid)
            probe = newline + 1 if newline >= 0 else _line_at_or_after(block, mid, n)
            if probe <= lo or probe >= hi:  # no line starts between the two
                return stop
            found = self._stopper(block, probe, n, bound)
            if found >= 0:
                hi, stop = probe, found
            else:
                lo = probe

    def _stopper(self, block: bytes, start: int, n: int, bound: Bound) -> int:
        """The first timestamped line at or after `start` if it sorts after `bound`, else -1
        (also when no line of the next `LOOKAHEAD_LINES` has a timestamp)."""
        bound_ts, bound_order, bound_stamp = bound
        for _ in range(LOOKAHEAD_LINES):
            if start >= n:
                return -1
            if bound_stamp is not None:
                match = _JARVIS_STAMP.match(block, start)
                if match is not None:
                    stamp = match[1]
                    after = stamp > bound_stamp or (
                        stamp == bound_stamp and self.order > bound_order
                    )
                    return start if after else -1
            ts = time_at(block, start)
            if ts is not None:
                after = ts > bound_ts or (ts == bound_ts and self.order > bound_order)
                return start if after else -1
            newline = block.find(b"\n", start)
            if newline < 0:
                return -1
            start = newline + 1
        return -1


def _line_at_or_after(block: bytes, at: int, n: int) -> int:
    """The first line start at or after `at` (`n` if none)."""
    if at >= n:
        return n
    if at <= 0:
        return 0
    newline = block.find(b"\n", at - 1)
    return n if newline < 0 else newline + 1


def _last_stamp(block: bytes, default: float) -> float:
    """The timestamp of the block's last line that has one (looking back a few lines)."""
    end = len(block)
    for _ in range(LOOKAHEAD_LINES):
        if end <= 0:
            break
        start = block.rfind(b"\n", 0, end - 1) + 1
        ts = time_at(block, start)
        if ts is not None:
            return ts
        end = start
    return default


def merge_scan(scanner: Scanner, inputs: list[list[Part]]) -> None:
    """Feed every input's lines to `scanner` in timestamp order, a run at a time."""
    started = time.perf_counter()
    coverage = scanner.coverage
    for parts in inputs:
        coverage.bytes += sum(end - start for _, start, end in parts)
    cursors = [_Cursor(order, parts) for order, parts in enumerate(inputs)]
    heap = [(c.head(), c.order, c) for c in cursors if c.live]
    heapq.heapify(heap)
    while heap:
        _, order, cursor = heapq.heappop(heap)
        bound = (heap[0][0], heap[0][1], heap[0][2].stamp()) if heap else None
        cursor.feed(scanner, bound)
        if cursor.live:
            heapq.heappush(heap, (cursor.head(), order, cursor))
    coverage.seconds += time.perf_counter() - started


def time_order(
    sources: Sources, ts_at: Callable[[int], float | None]
) -> Callable[[Iterable[int]], list[int]]:
    """How a finding lists its lines when they come from several inputs: in the order
    the merge read them (each input's lines in file order, inputs merged by time)."""

    def order(refs: Iterable[int]) -> list[int]:
        by_input: dict[int, list[int]] = {}
        for ref in sorted(set(refs)):
            by_input.setdefault(sources.input_of(ref), []).append(ref)
        if len(by_input) < 2:
            return [ref for group in by_input.values() for ref in group]
        keyed: list[list[tuple[float, int, int]]] = []
        for number, group in by_input.items():
            last = -math.inf
            lines = []
            for ref in group:
                ts = ts_at(ref)
                last = last if ts is None else ts
                lines.append((last, number, ref))
            keyed.append(lines)
        return [ref for _, _, ref in heapq.merge(*keyed)]

    return order
