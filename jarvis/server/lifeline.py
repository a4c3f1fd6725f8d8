"""A worker's lifeline to its supervisor: when `jarvis serve --workers` dies, however it
dies (SIGKILL included), every worker is gone within 2 s instead of holding the port.

A worker notices in three ways, because each alone has a hole:

- `PR_SET_PDEATHSIG` (Linux, `prctl` through ctypes): the kernel sends the worker
  SIGTERM when its parent dies, with no help from either process. But the worker arms
  it itself, so a parent that died before that is missed (hence `attach`'s `getppid()`
  check right after); and it follows the *thread* that started the worker, not the
  process (`Fleet` starts every worker from the supervisor's main thread).
- The lifeline pipe (any OS): the supervisor holds its write end for its whole life
  and never writes; the kernel closes that end when the supervisor dies, however it
  dies, and every worker's read end then reports EOF. EOF stays: a parent that died
  before the worker looked is seen at once, no race. Its hole: a process that got a
  copy of the write end (a fork without exec) would keep it open. multiprocessing's
  spawn passes a child only the descriptors it is given, so none does today.
- `os.getppid()` compared with the supervisor's pid each time the pipe wait times
  out (every `POLL_S`): a dead parent's children are re-parented, whatever else
  holds the pipe.

The watching is a daemon thread blocked on the pipe, not a task on the event loop: a
loop that is blocked or busy cannot delay it. Once the supervisor is gone it asks for
the graceful shutdown (streams end with `reason=shutdown`, bounded by `GRACE_S`),
and past `EXIT_WITHIN_S` ends the process itself, so the bound holds even when the
graceful path does not finish. (A worker wedged in C code that holds the GIL is
beyond any Python thread; the asyncio server never is.)
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

#: From noticing the supervisor gone to this worker's exit, at most. The promise is 2 s
#: from the supervisor's death; noticing takes about nothing (the pipe) to `POLL_S`.
EXIT_WITHIN_S = 1.5
#: The graceful part of that: `JarvisServer.shutdown` gives half of it to the streams
#: to end, as it does with `--shutdown-timeout` on SIGTERM.
GRACE_S = 1.0
#: How often the watcher compares `getppid()` while the pipe stays open.
POLL_S = 0.25
#: Of `EXIT_WITHIN_S`, kept to write the log's last lines before a forced exit.
FLUSH_S = 0.1
#: The exit status of a worker that found its supervisor gone and did not finish its
#: graceful shutdown in time (or found it gone before it started).
EXIT_PARENT_GONE = 4

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class Lifeline:
    """What a worker gets from its supervisor: the pipe's read end and the supervisor's pid.

    Picklable (multiprocessing's spawn passes the read end on as a descriptor).
    """

    reader: Connection
    supervisor_pid: int


def new_lifeline() -> tuple[Lifeline, Connection]:
    """In the supervisor: the `Lifeline` for its workers, and the write end to keep open
    for as long as it lives (closing it tells every worker to go)."""
    reader, writer = multiprocessing.Pipe(duplex=False)
    return Lifeline(reader, os.getpid()), writer


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux only).

    False where there is no such call, or when it was refused: the pipe still watches.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def attach(lifeline: Lifeline) -> bool:
    """First thing in a worker: arm the parent-death signal, then say whether the
    supervisor is still the parent (False: it died before the signal was armed)."""
    set_parent_death_signal(signal.SIGTERM)
    return os.getppid() == lifeline.supervisor_pid


class ParentWatch:
    """Waits, on a daemon thread, for the supervisor to die; then `on_gone(via)` (start
    the graceful shutdown) and, if the process is still here at the deadline,
    `on_deadline()` (write the log) and `exit_process(EXIT_PARENT_GONE)`.

    `via` says how the death was noticed: `pipe` (the supervisor's end closed) or
    `ppid` (this process was re-parented). Time and the process calls are injected,
    so tests drive it without a supervisor to kill.
    """

    def __init__(
        self,
        lifeline: Lifeline,
        *,
        on_gone: Callable[[str], object],
        on_deadline: Callable[[], object] = lambda: None,
        exit_process: Callable[[int], object] = os._exit,
        getppid: Callable[[], int] = os.getppid,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        poll_s: float = POLL_S,
        exit_within_s: float = EXIT_WITHIN_S,
    ) -> None:
        self.lifeline = lifeline
        self._on_gone = on_gone
        self._on_deadline = on_deadline
        self._exit = exit_process
        self._getppid = getppid
        self._clock = clock
        self._sleep = sleep
        self._poll_s = poll_s
        self._exit_within_s = exit_within_s
        #: How the supervisor's death was noticed; None while it lives.
        self.via: str | None = None

    def __repr__(self) -> str:
        state = "watching" if self.via is None else f"parent gone via {self.via}"
        return f"<ParentWatch supervisor={self.lifeline.supervisor_pid} {state}>"

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="jarvis-parent-watch", daemon=True)
        thread.start()
        return thread

    def wait_for_parent_death(self) -> str:
        """Block until the supervisor is gone; return how that was noticed."""
        while True:
            try:
                # Nothing is ever written: readable means EOF, every write end closed.
                if self.lifeline.reader.poll(self._poll_s):
                    return "pipe"
            except OSError:
                return "pipe"
            if self._getppid() != self.lifeline.supervisor_pid:
                return "ppid"

    def run(self) -> None:
        """The thread's body: wait, ask for the shutdown, enforce the deadline."""
        self.via = self.wait_for_parent_death()
        deadline = self._clock() + self._exit_within_s
        self._on_gone(self.via)
        # A graceful exit ends the process, and this daemon thread with it, before this.
        self._sleep(max(0.0, deadline - FLUSH_S - self._clock()))
        self._on_deadline()
        self._exit(EXIT_PARENT_GONE)
