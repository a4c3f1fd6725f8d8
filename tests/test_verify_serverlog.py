"""`jarvis_cli/verify/serverlog.py` on a fleet's log: `--log-file system.log` names every worker's
file (`system.w1.log`, ...), lines since a mark come from all of them, merged by time.
(The single-file reading, in every dialect, is in test_log_dialects.py.)"""

from __future__ import annotations

from pathlib import Path

from jarvis.server.fleet import worker_log_path
from jarvis_cli.logs.dialects import parse_time
from jarvis_cli.verify import serverlog


def _write(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)


def _start(ts: str, trace: str, session: str) -> str:
    return (
        f"ts=2026-01-01T00:00:{ts}Z level=info event=stream_start trace={trace} session={session}"
    )


def test_serverlog_reads_every_workers_file_named_as_the_fleet_names_them(
    tmp_path: Path,
) -> None:
    """`system.log` names the files the fleet writes (jarvis.server.fleet.worker_log_path),
    in worker order, and not itself when the fleet's parent wrote none; a single file and
    unrelated neighbours are left as they were."""
    log = tmp_path / "system.log"
    assert serverlog.files(log) == [log]
    for worker in (10, 2, 1):
        path = worker_log_path(log, worker)
        assert path is not None
        path.touch()
    (tmp_path / "system.wx.log").touch()
    (tmp_path / "other.w1.log").touch()
    expected = [tmp_path / "system.w1.log", tmp_path / "system.w2.log", tmp_path / "system.w10.log"]
    assert serverlog.files(log) == expected
    log.touch()
    assert serverlog.files(log) == [log, *expected]


def test_serverlog_merges_workers_lines_by_time_since_a_mark(tmp_path: Path) -> None:
    """Lines since a mark come from every worker's file, in time order (a line without a
    time stays after its predecessor), including a worker file that appeared after the
    mark; a session's stream_starts are in the order they happened across workers."""
    log = tmp_path / "server.log"
    w1, w2 = tmp_path / "server.w1.log", tmp_path / "server.w2.log"
    _write(w1, _start("01.000000", "old", "s0"))
    mark = serverlog.size(log)
    assert int(mark) == w1.stat().st_size
    _write(
        w1, _start("02.000000", "a", "s1"), "  a continuation line", _start("04.000000", "c", "s1")
    )
    _write(w2, _start("03.000000", "b", "s1"))  # the file appears after the mark
    texts = serverlog.lines_since(log, mark)
    assert [t.split("trace=")[1][:1] if "trace=" in t else "-" for t in texts] == [
        "a", "-", "b", "c",
    ]  # fmt: skip
    starts = serverlog.session_starts(log, mark, "s1")
    assert [s["trace"] for s in starts] == ["a", "b", "c"]
    assert [s["trace"] for s in serverlog.session_starts(log, 0, "s0")] == ["old"]


def test_serverlog_links_a_stream_end_in_the_worker_that_ran_the_stream(tmp_path: Path) -> None:
    """A session whose streams ran on two workers has ended only when the stream started
    since the mark logged its stream_end, whichever worker's file holds it."""
    log = tmp_path / "server.log"
    w1, w2 = tmp_path / "server.w1.log", tmp_path / "server.w2.log"
    w1.touch()
    mark = serverlog.size(log)
    _write(w2, _start("01.000000", "t2", "s1"))
    assert not serverlog.session_ended(log, mark, "s1")
    _write(w1, "ts=2026-01-01T00:00:02.000000Z level=info event=stream_end trace=t9 session=s9")
    assert not serverlog.session_ended(log, mark, "s1")
    _write(w2, "ts=2026-01-01T00:00:03.000000Z level=info event=stream_end trace=t2")
    assert serverlog.session_ended(log, mark, "s1")


def test_loop_blocked_stacks_come_from_the_servers_own_log(tmp_path: Path) -> None:
    """A server that is not verify-hang's process, with --log-file: the stacks of a hang
    are its watchdog's loop_blocked lines written since the run began, one frame a line,
    in any format the reader reads (here the user's `[asctime] levelname name - msg`)."""
    log = tmp_path / "app.log"
    stack = "jarvis/faults.py:72:blocking_flush <- jarvis/_batcher.py:230:_write"
    _write(
        log,
        "[2026-01-01 00:00:01,000] ERROR jarvis.stream - event=loop_blocked lag_ms=300 "
        'stack="old.py:1:before_the_run"',
        "[2026-01-01 00:00:05,000] ERROR jarvis.stream - event=loop_blocked lag_ms=900 "
        f'stack="{stack}"',
    )
    since = parse_time("2026-01-01 00:00:03,000")
    lines = serverlog.loop_blocked_stacks(log, since)
    assert lines == [
        "stacks: from the server's log, 1 loop_blocked line(s) of its watchdog:",
        "  app.log:2: the event loop did not answer for 900 ms; stuck in "
        "jarvis/faults.py:72:blocking_flush",
        "    jarvis/faults.py:72:blocking_flush",
        "    <- jarvis/_batcher.py:230:_write",
    ]
    assert runner_stacks(log, since) == lines
    later = parse_time("2026-01-01 00:00:09,000")
    assert (
        "no loop_blocked line since the run began" in serverlog.loop_blocked_stacks(log, later)[0]
    )


def runner_stacks(log: Path, since: float | None) -> list[str]:
    """What verify-hang prints for a hang of a server it did not start (`--url`)."""
    import asyncio

    from jarvis_cli.verify.runner import _stacks

    return asyncio.run(_stacks(None, log, since or 0.0))
