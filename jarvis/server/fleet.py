"""`jarvis serve --workers N`: N worker processes behind one listening socket.

The parent binds the socket, starts the workers (spawned, each a whole
`jarvis serve` with its own loop, guard and log file `system.wN.log`), and
supervises them: a worker that dies is started again, so a `kill -9` costs
only that worker's streams in flight. SIGINT or SIGTERM stops the fleet: each
worker gets SIGTERM (its graceful, stream-ending shutdown), bounded, then
SIGKILL. One stream per session across the workers is the shared registry's
job (`--registry redis://...`): ServerConfig refuses `--workers` without it.
Workers die with the supervisor, however it dies (`lifeline.py`): a `kill -9` of the
parent leaves no orphans holding the port.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path

from ..config import ServerConfig
from ..vocabulary import Event
from .lifeline import (
    EXIT_PARENT_GONE,
    EXIT_WITHIN_S,
    FLUSH_S,
    GRACE_S,
    Lifeline,
    ParentWatch,
    attach,
    new_lifeline,
)

#: A worker that dies sooner than this after its start is not restarted in a loop.
RESTART_BACKOFF_S = 1.0


def worker_log_path(path: Path | None, worker: int) -> Path | None:
    """`logs/system.log` becomes `logs/system.w2.log` for worker 2 (`diagnose` merges them)."""
    if path is None:
        return None
    return path.with_name(f"{path.stem}.w{worker}{path.suffix}")


def _worker_main(config: ServerConfig, sock: socket.socket, lifeline: Lifeline) -> None:
    """One worker: the single-process server on the inherited socket, for as long as
    its supervisor lives."""
    from ..eventlog import EventLog
    from ..logfile import install_sighup_reopen
    from .run import JarvisServer

    if not attach(lifeline):
        os._exit(EXIT_PARENT_GONE)  # the supervisor died before the signal was armed
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    server = JarvisServer(config)
    log = server.ctx.log
    if isinstance(log, EventLog):
        install_sighup_reopen(log)

    def parent_gone(via: str) -> None:
        log.emit(Event.PARENT_GONE, supervisor_pid=lifeline.supervisor_pid, via=via,
                 exit_within_ms=int(EXIT_WITHIN_S * 1000))  # fmt: skip
        server.request_shutdown(GRACE_S)

    def flush_log() -> None:
        if isinstance(log, EventLog):
            log.close(timeout=FLUSH_S)

    # Before run(): a supervisor that dies while this worker starts up is noticed too.
    ParentWatch(lifeline, on_gone=parent_gone, on_deadline=flush_log).start()
    # Started with SIGHUP blocked (see Fleet.start): one sent meanwhile is delivered now,
    # to the handler, instead of killing a worker that had no handler yet.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    sys.exit(0 if server.started else 3)


class Fleet:
    """Starts, watches and stops the workers of one `jarvis serve --workers N`."""

    def __init__(self, config: ServerConfig, sock: socket.socket) -> None:
        self.config = config
        self.sock = sock
        self._spawn = multiprocessing.get_context("spawn")
        self.workers: dict[int, BaseProcess] = {}
        self._started_at: dict[int, float] = {}
        self.stopping = threading.Event()
        # Held open, never written, for as long as this process lives: its closing (the
        # kernel does it however we die) is what tells the workers to go.
        self.lifeline, self._lifeline_writer = new_lifeline()

    def __repr__(self) -> str:
        alive = sum(1 for p in self.workers.values() if p.is_alive())
        return f"<Fleet {alive}/{self.config.workers} workers>"

    def start(self, worker: int) -> None:
        """Start `worker`. From the main thread only: the worker's parent-death signal
        fires when the thread that started it ends, and only the main thread lives
        exactly as long as this process."""
        config = dataclasses.replace(
            self.config, worker=worker, log_file=worker_log_path(self.config.log_file, worker)
        )
        process = self._spawn.Process(
            target=_worker_main,
            args=(config, self.sock, self.lifeline),
            name=f"jarvis-worker-{worker}",
        )
        # A SIGHUP the parent passes on must not reach a worker still starting (SIGHUP's
        # default action ends the process): it starts with the signal blocked.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self.workers[worker] = process
        self._started_at[worker] = time.monotonic()

    def watch(self, interval_s: float = 0.2) -> None:
        """Until told to stop: start again any worker that died (not one that cannot start)."""
        while not self.stopping.wait(interval_s):
            for worker, process in list(self.workers.items()):
                if process.is_alive():
                    continue
                lived = time.monotonic() - self._started_at[worker]
                process.join(0)
                if lived < RESTART_BACKOFF_S and process.exitcode not in (None, -signal.SIGKILL):
                    sys.stderr.write(
                        f"jarvis: worker {worker} exited {process.exitcode} right after its "
                        "start; stopping the fleet\n"
                    )
                    self.stopping.set()
                    return
                sys.stderr.write(f"jarvis: worker {worker} died ({process.exitcode}); restarting\n")
                self.start(worker)

    def forward(self, sig: int) -> None:
        """Pass a signal on to every live worker (SIGHUP: reopen your log files)."""
        for process in self.workers.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, sig)

    def stop(self) -> None:
        """SIGTERM every worker (each ends its streams), wait (bounded), then SIGKILL."""
        for process in self.workers.values():
            if process.is_alive() and process.pid is not None:
                process.terminate()
        deadline = time.monotonic() + self.config.guard.shutdown_timeout + 2
        for process in self.workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
        for process in self.workers.values():
            if process.is_alive():
                process.kill()
                process.join(5)
        self._lifeline_writer.close()  # any worker still here now follows on its own


def run_fleet(
    config: ServerConfig, sock: socket.socket, on_ready: Callable[[int], None] | None
) -> int:
    """Run the fleet until SIGINT/SIGTERM; 0 when it stopped on request."""
    fleet = Fleet(config, sock)
    previous = {
        sig: signal.signal(sig, lambda *_: fleet.stopping.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: fleet.forward(signal.SIGHUP))
    try:
        for worker in range(1, config.workers + 1):
            fleet.start(worker)
        if on_ready is not None:
            on_ready(sock.getsockname()[1])
        fleet.watch()
    finally:
        fleet.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stopped_on_request = all(p.exitcode in (0, -signal.SIGTERM) for p in fleet.workers.values())
    return 0 if stopped_on_request else 3
