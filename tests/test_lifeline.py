"""The worker's lifeline to its supervisor, in process: a real pipe, a fake clock, sleep,
getppid and exit, so the watcher is driven without a supervisor to kill. The fleet with
a real `kill -9` is tests/test_fleet_parent_death.py."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection

import pytest

from jarvis.server.lifeline import (
    EXIT_PARENT_GONE,
    EXIT_WITHIN_S,
    FLUSH_S,
    Lifeline,
    ParentWatch,
    new_lifeline,
)

SUPERVISOR = 4242


class FakeClock:
    """Time moves only when the watcher sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def pipe() -> Iterator[tuple[Lifeline, Connection]]:
    lifeline, writer = new_lifeline()
    yield Lifeline(lifeline.reader, SUPERVISOR), writer
    writer.close()
    lifeline.reader.close()


def watch(
    lifeline: Lifeline,
    calls: list[object],
    getppid: Callable[[], int] = lambda: SUPERVISOR,
    poll_s: float = 0.01,
) -> ParentWatch:
    """A watcher whose every outward call is recorded in `calls`, on a fake clock."""
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        calls.append(("sleep", round(seconds, 3)))
        clock.sleep(seconds)

    return ParentWatch(
        lifeline,
        on_gone=lambda via: calls.append(("gone", via)),
        on_deadline=lambda: calls.append("deadline"),
        exit_process=lambda code: calls.append(("exit", code)),
        getppid=getppid,
        clock=clock,
        sleep=sleep,
        poll_s=poll_s,
    )


@pytest.mark.timeout(5)
def test_a_supervisor_gone_before_the_watch_began_is_seen_at_once_then_the_deadline_exits(
    pipe: tuple[Lifeline, Connection],
) -> None:
    """The write end closed before anyone looked (EOF stays): the watcher says `pipe`, asks
    for the graceful shutdown, and at the deadline writes the log and exits 4."""
    lifeline, writer = pipe
    writer.close()
    calls: list[object] = []
    watcher = watch(lifeline, calls)
    watcher.run()
    assert calls == [
        ("gone", "pipe"),
        ("sleep", round(EXIT_WITHIN_S - FLUSH_S, 3)),
        "deadline",
        ("exit", EXIT_PARENT_GONE),
    ]
    assert repr(watcher) == f"<ParentWatch supervisor={SUPERVISOR} parent gone via pipe>"


@pytest.mark.timeout(5)
def test_reparenting_is_noticed_while_the_pipe_stays_open(
    pipe: tuple[Lifeline, Connection],
) -> None:
    """Something else holds the write end open: the watcher still goes, on `getppid()`
    changing (re-parented to init or a subreaper), checked after each pipe wait."""
    lifeline, _writer = pipe
    parents = iter([SUPERVISOR, SUPERVISOR, 1])
    calls: list[object] = []
    watcher = watch(lifeline, calls, getppid=lambda: next(parents))
    assert repr(watcher) == f"<ParentWatch supervisor={SUPERVISOR} watching>"
    watcher.run()
    assert calls[0] == ("gone", "ppid")
    assert calls[-1] == ("exit", EXIT_PARENT_GONE)


@pytest.mark.timeout(5)
def test_while_the_supervisor_lives_the_worker_is_left_alone(
    pipe: tuple[Lifeline, Connection],
) -> None:
    """On its thread, the watcher does nothing while the supervisor holds the pipe and is
    the parent; the moment the write end closes, it asks for the shutdown."""
    lifeline, writer = pipe
    gone = threading.Event()
    polls = threading.Semaphore(0)

    def getppid() -> int:
        polls.release()
        return SUPERVISOR

    watcher = ParentWatch(
        lifeline,
        on_gone=lambda via: gone.set(),
        exit_process=lambda code: None,
        getppid=getppid,
        sleep=lambda s: None,
        poll_s=0.01,
    )
    thread = watcher.start()
    for _ in range(5):  # five pipe waits timed out, parent unchanged: still watching
        assert polls.acquire(timeout=2)
    assert not gone.is_set()
    assert watcher.via is None
    writer.close()
    assert gone.wait(2)
    thread.join(2)
    assert watcher.via == "pipe"


@pytest.mark.e2e  # a child process reads its own parent-death signal
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.timeout(20)
def test_attach_arms_the_parent_death_signal_and_checks_the_parent() -> None:
    """In a child process (arming it here would tie pytest to its own parent): attach()
    sets PR_SET_PDEATHSIG to SIGTERM, read back with PR_GET_PDEATHSIG, and says False when
    the supervisor's pid is not the parent's (it died before the signal was armed)."""
    code = """if True:
        import ctypes, os
        from jarvis.server.lifeline import Lifeline, attach, new_lifeline
        lifeline, writer = new_lifeline()
        mine = attach(Lifeline(lifeline.reader, os.getppid()))
        sig = ctypes.c_int()
        ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
        other = attach(Lifeline(lifeline.reader, os.getppid() + 1))
        print(mine, sig.value, other)
    """
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=15, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "15", "False"]
