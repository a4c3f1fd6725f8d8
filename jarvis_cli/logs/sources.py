"""Log inputs: files (plain or .gz), rotated sets and stdin, as seekable byte buffers.

Every input ends up as a buffer we can scan in C and re-read for evidence:
plain files are mmap'd; `.gz` and stdin are spooled to a temporary file
first (memory stays flat, disk holds the copy). A reference to a line is an
integer: the source index in the high bits, the byte offset in the low bits.
Each source belongs to an *input*: one path of the command line with its rotated
set, one process's time-ordered log (several inputs are merged by time, `merge.py`).
"""

from __future__ import annotations

import bisect
import gzip
import mmap
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from jarvis.exceptions import ToolError

from ..exit_codes import ExitCode
from .dialects import strip_ansi
from .findings import Evidence, Finding


class Buffer(Protocol):
    """What a source's bytes must offer: bytes, mmap, or a `FileView`."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice, /) -> bytes: ...

    def find(self, sub: bytes, start: int = ..., /) -> int: ...

    def rfind(self, sub: bytes, start: int = ..., end: int = ..., /) -> int: ...


class FileView:
    """A growing file read through `os.pread`, for `--follow` (never loaded whole)."""

    _WINDOW = 1 << 16

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __len__(self) -> int:
        return os.fstat(self.fd).st_size

    def __getitem__(self, index: slice, /) -> bytes:
        start, stop, _ = index.indices(len(self))
        return os.pread(self.fd, max(0, stop - start), start)

    def find(self, sub: bytes, start: int = 0, /) -> int:
        while True:
            window = os.pread(self.fd, self._WINDOW, start)
            if not window:
                return -1
            found = window.find(sub)
            if found >= 0:
                return start + found
            start += len(window)

    def rfind(self, sub: bytes, start: int = 0, end: int | None = None, /) -> int:
        end = len(self) if end is None else end
        while end > start:
            lo = max(start, end - self._WINDOW)
            found = os.pread(self.fd, end - lo, lo).rfind(sub)
            if found >= 0:
                return lo + found
            end = lo
        return -1

    def close(self) -> None:
        os.close(self.fd)


OFFSET_BITS = 40
OFFSET_MASK = (1 << OFFSET_BITS) - 1
MAX_EVIDENCE_CHARS = 600


class InputError(ToolError):
    """An input that cannot be read at all (missing, unreadable, a directory)."""

    exit_code = ExitCode.UNAVAILABLE


@dataclass(eq=False)
class Source:
    """One input, readable as bytes, with a sparse index from offsets to line numbers."""

    name: str
    index: int
    buffer: Buffer
    _keep: list[object] = field(default_factory=list)
    #: Which input (a path of the command line, with its rotated set) this file is part of.
    input: int = 0
    _checkpoint_offsets: list[int] = field(default_factory=lambda: [0])
    _checkpoint_lines: list[int] = field(default_factory=lambda: [1])

    def __len__(self) -> int:
        return len(self.buffer)

    def read(self, start: int, stop: int) -> bytes:
        """Bytes `start:stop`, read with pread when there is a file: scanning through
        the mmap would leave every page of a 1 GB log resident in this process."""
        fd = self._fd()
        if fd is None:
            return self.buffer[start:stop]
        return os.pread(fd, stop - start, start)

    def read_lines(self, start: int, end: int, size: int) -> bytes:
        """About `size` bytes from `start`, cut at the last line end before `end`: whole
        lines only (a line longer than `size` is read to its end). The line end is found
        in what was read: touching the mmap would fault in a readahead window per call."""
        block = self.read(start, min(end, start + size))
        if start + len(block) >= end:
            return block
        cut = block.rfind(b"\n") + 1
        if cut == 0:  # one line longer than `size`: read on to its end
            newline = self.buffer.find(b"\n", start + len(block))
            cut = (end if newline < 0 or newline >= end else newline + 1) - start
            return self.read(start, start + cut)
        return block[:cut]

    def _fd(self) -> int | None:
        if isinstance(self.buffer, FileView):
            return self.buffer.fd
        for item in self._keep:
            fileno = getattr(item, "fileno", None)
            if fileno is not None:
                return int(fileno())
        return None

    def ref(self, offset: int) -> int:
        return (self.index << OFFSET_BITS) | offset

    def checkpoint(self, offset: int, line: int) -> None:
        """Record that the line starting at `offset` is line number `line` (scan order)."""
        if offset > self._checkpoint_offsets[-1]:
            self._checkpoint_offsets.append(offset)
            self._checkpoint_lines.append(line)

    def line_start(self, offset: int) -> int:
        return self.buffer.rfind(b"\n", 0, offset) + 1

    def count_lines(self, start: int, end: int) -> int:
        """Newlines in `buffer[start:end]`, read in bounded pieces (mmap has no count(),
        and one slice of a large range would copy it whole into memory)."""
        total = 0
        while start < end:
            stop = min(end, start + (8 << 20))
            total += self.read(start, stop).count(b"\n")
            start = stop
        return total

    def line_number(self, offset: int) -> int:
        i = bisect.bisect_right(self._checkpoint_offsets, offset) - 1
        base = self._checkpoint_offsets[i]
        return self._checkpoint_lines[i] + self.count_lines(base, offset)

    def line_at(self, offset: int) -> bytes:
        start = self.line_start(offset)
        end = self.buffer.find(b"\n", offset)
        return self.buffer[start : end if end >= 0 else len(self.buffer)]

    def evidence(self, offset: int) -> Evidence:
        text = strip_ansi(self.line_at(offset).decode("utf-8", "replace"))  # colours are no proof
        if len(text) > MAX_EVIDENCE_CHARS:
            text = text[:MAX_EVIDENCE_CHARS] + "…"
        return Evidence(self.name, self.line_number(offset), text)

    def close(self) -> None:
        if isinstance(self.buffer, mmap.mmap | FileView):
            self.buffer.close()
        for item in self._keep:
            close = getattr(item, "close", None)
            if close is not None:
                close()


class Sources:
    """All inputs of one run, and ref resolution across them."""

    def __init__(self) -> None:
        self.items: list[Source] = []

    def __iter__(self) -> Iterator[Source]:
        return iter(self.items)

    def add(
        self, name: str, buffer: Buffer, keep: Iterable[object] = (), *, input: int = 0
    ) -> Source:
        source = Source(name, len(self.items), buffer, list(keep), input=input)
        self.items.append(source)
        return source

    def inputs(self) -> list[list[Source]]:
        """The sources of each input, inputs in command-line order, each oldest file first."""
        grouped: dict[int, list[Source]] = {}
        for source in self.items:
            grouped.setdefault(source.input, []).append(source)
        return list(grouped.values())

    def input_of(self, ref: int) -> int:
        """The input a line reference belongs to."""
        return self.items[ref >> OFFSET_BITS].input

    def resolve(self, ref: int) -> Evidence:
        return self.items[ref >> OFFSET_BITS].evidence(ref & OFFSET_MASK)

    def resolve_findings(self, findings: Iterable[Finding]) -> None:
        """Turn every finding's refs into evidence lines, each line resolved once."""
        pending = [f for f in findings if f.refs and not f.evidence]
        cache = {ref: self.resolve(ref) for ref in sorted({r for f in pending for r in f.refs})}
        for finding in pending:
            finding.evidence = [cache[r] for r in finding.refs]

    def source_of(self, ref: int) -> Source:
        return self.items[ref >> OFFSET_BITS]

    def close(self) -> None:
        for source in self.items:
            source.close()


_ROTATED = re.compile(r"^(?P<base>.+?)\.(?P<n>\d+)(?P<gz>\.gz)?$")


def expand_inputs(paths: list[str]) -> list[list[str]]:
    """Each path with its rotated set, oldest first (`.3.gz`, `.2`, `.1`, then itself):
    one list per input. A file named twice, or given itself, is read once."""
    inputs: list[list[str]] = []
    seen: set[str] = set()
    for path in paths:
        if path == "-":
            inputs.append([path])
            continue
        p = Path(path)
        siblings: list[tuple[int, str]] = []
        if p.parent.is_dir():
            for candidate in p.parent.iterdir():
                match = _ROTATED.match(candidate.name)
                if match and match["base"] == p.name:
                    siblings.append((int(match["n"]), str(candidate)))
        files = [s for _, s in sorted(siblings, reverse=True) if s not in seen and s not in paths]
        if path not in seen:
            files.append(path)
        seen.update(files)
        if files:
            inputs.append(files)
    return inputs


def _spool(reader: IO[bytes]) -> tuple[mmap.mmap | bytes, IO[bytes]]:
    spool = tempfile.TemporaryFile(prefix="jarvis-diagnose-")  # noqa: SIM115 - outlives this call
    shutil.copyfileobj(reader, spool, 1 << 20)
    spool.flush()
    if spool.tell() == 0:
        return b"", spool
    return mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ), spool


def open_inputs(paths: list[str], *, rotated: bool = True) -> Sources:
    """Open every input; raise `InputError` naming the first that cannot be read."""
    sources = Sources()
    try:
        inputs = expand_inputs(paths) if rotated else [[path] for path in paths]
        for number, files in enumerate(inputs):
            for path in files:
                _open_one(sources, path, number)
    except BaseException:
        sources.close()
        raise
    return sources


def _open_one(sources: Sources, path: str, number: int) -> None:
    if path == "-":
        buffer, spool = _spool(sys.stdin.buffer)
        sources.add("<stdin>", buffer, [spool], input=number)
        return
    if os.path.isdir(path):
        raise InputError(f"{path} is a directory, not a log file")
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as reader:
                buffer, spool = _spool(reader)  # type: ignore[arg-type]
            sources.add(path, buffer, [spool], input=number)
            return
        handle = open(path, "rb")  # noqa: SIM115 - kept open with the mmap
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise InputError(f"cannot read {path}: {reason}") from exc
    size = os.fstat(handle.fileno()).st_size
    mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    sources.add(path, mapped, [handle], input=number)
