"""The event log's file on disk: appends whole batches, rotates by size, reopens on request.

Only the log's writer thread calls `write` (never the event loop). `request_reopen`
only sets a flag, so a signal handler may call it: logrotate's move-then-HUP.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import FrameType
from typing import IO, Protocol

from .exceptions import ConfigError


class RotatingFile:
    """An append-only file that rotates by size and reopens its path when asked.

    A rotated set is named as `jarvis diagnose` reads it, oldest last:
    `system.log` (current), `system.log.1` (newest backup) … `system.log.<backups>`.
    """

    def __init__(self, path: Path, *, max_bytes: int | None = None, backups: int = 5) -> None:
        if max_bytes is not None and max_bytes < 0:
            raise ConfigError(f"log max_bytes must be >= 0 (0: never rotate), not {max_bytes}")
        if backups < 1:
            raise ConfigError(f"log backups must be >= 1, not {backups}")
        self.path = path
        #: Rotate before a batch would take the file past this size; None: never.
        self.max_bytes = max_bytes or None
        self.backups = backups
        self._reopen_requested = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._open()
        except OSError as exc:
            raise ConfigError(f"cannot open log file {path}: {exc.strerror}") from exc

    def __repr__(self) -> str:
        bound = f"{self.max_bytes} bytes x {self.backups}" if self.max_bytes else "unbounded"
        return f"<RotatingFile {str(self.path)!r} {bound}>"

    def request_reopen(self) -> None:
        """Reopen the path before the next write. Only sets a flag: safe in a signal
        handler, on any thread (a plain store, no lock that the interrupted code may hold)."""
        self._reopen_requested = True

    def write(self, data: bytes) -> None:
        """Append one batch of whole lines, in one write: reopen first if asked, and
        rotate first if the batch would take the file past `max_bytes` (so a line never
        spans two files; a file passes the bound only when one batch alone is larger)."""
        if self._reopen_requested:
            self._reopen_requested = False
            self._reopen()
        if not data:
            return
        if self.max_bytes is not None:
            # fstat, not a count of our own writes: the file may have been truncated
            # (logrotate's copytruncate) or moved under us.
            size = os.fstat(self._file.fileno()).st_size
            if size > 0 and size + len(data) > self.max_bytes:
                self._rotate()
        self._file.write(data)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def _open(self) -> IO[bytes]:
        return self.path.open("ab")

    def _reopen(self) -> None:
        try:
            fresh = self._open()
        except OSError:
            return  # keep writing to the file we hold: nothing lost; the next HUP retries
        self._file.close()
        self._file = fresh

    def _rotate(self) -> None:
        """`.N-1` → `.N` … `.1` → `.2`, the file → `.1`, a new file; the oldest drops off.

        Any failure stops the shift where it is (nothing is overwritten but the oldest)
        and the batch goes to the file we hold; the next batch tries again.
        """
        try:
            for n in range(self.backups - 1, 0, -1):
                older = self._backup(n)
                if older.exists():
                    os.replace(older, self._backup(n + 1))
            os.replace(self.path, self._backup(1))
        except OSError:
            return
        self._reopen()

    def _backup(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")


class Reopenable(Protocol):
    """Anything whose file can be reopened from a signal handler (an `EventLog`)."""

    def reopen(self) -> None: ...


def install_sighup_reopen(log: Reopenable) -> None:
    """On SIGHUP, reopen `log`'s file (after logrotate moved it), at the writer's next wake-up.

    The handler only sets a flag; no I/O runs in it. Call from the main thread (Python
    installs signal handlers there only). A no-op where there is no SIGHUP (Windows).
    """
    if not hasattr(signal, "SIGHUP"):
        return

    def on_sighup(signum: int, frame: FrameType | None) -> None:
        log.reopen()

    signal.signal(signal.SIGHUP, on_sighup)
