"""The event log's file: rotation by size, reopen after a move (logrotate), SIGHUP, settings."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from jarvis.config import MIB, ServerConfig
from jarvis.eventlog import EventLog
from jarvis.exceptions import ConfigError
from jarvis.logfile import RotatingFile, install_sighup_reopen
from jarvis.vocabulary import Event
from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.main import main

#: The writer wakes this often in these tests (the server's is 20 ms).
TICK = 0.002
#: Bound on any wait for the writer thread.
WAIT_S = 5.0
#: A fixed wall clock: every line of one kind has the same length.
FIXED_CLOCK = 1795317000.0


def wait_until(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        time.sleep(TICK)


def lines_of(path: Path) -> list[str]:
    """The file's lines; none while it does not exist (between a rotation's rename and
    the new file's creation, the path is briefly absent)."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def bytes_in(folder: Path) -> int:
    return sum(len(line) + 1 for file in folder.iterdir() for line in lines_of(file))


def open_log(path: Path, **options: object) -> EventLog:
    return EventLog(
        path, strict=True, wall_clock=lambda: FIXED_CLOCK, flush_interval=TICK, **options
    )  # type: ignore[arg-type]


def emit_and_wait(log: EventLog, path: Path, n: int) -> None:
    """One line, then wait until the writer has written it: one line per batch."""
    log.emit(Event.SERVER_STOP, open_streams=n)
    wait_until(lambda: f"open_streams={n}" in "".join(lines_of(path)), f"line {n} written")


@pytest.mark.timeout(20)
def test_rotation_at_the_size_bound_keeps_whole_lines_and_numbered_backups(
    tmp_path: Path,
) -> None:
    """Lines of one size, three per file: twelve lines leave the last nine in system.log,
    .1 and .2 (oldest in the highest number), the first three dropped, none split."""
    path = tmp_path / "system.log"
    probe = tmp_path / "probe.log"
    sizer = open_log(probe)
    sizer.emit(Event.SERVER_STOP, open_streams=10)
    sizer.close()
    line_bytes = probe.stat().st_size
    files = [path, tmp_path / "system.log.1", tmp_path / "system.log.2"]
    log = open_log(path, max_bytes=3 * line_bytes + line_bytes // 2, backups=2)
    try:
        for n in range(10, 22):  # two-digit counts: every line the same length
            emit_and_wait(log, path, n)
    finally:
        log.close()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("system")) == [
        "system.log",
        "system.log.1",
        "system.log.2",
    ]
    for file in files:
        assert file.read_bytes().endswith(b"\n")
        assert file.stat().st_size == 3 * line_bytes
    kept = [line for file in reversed(files) for line in lines_of(file)]
    assert [int(line.rpartition("open_streams=")[2]) for line in kept] == list(range(13, 22))


@pytest.mark.timeout(10)
def test_a_batch_is_never_split_and_rotation_waits_for_the_next_one(tmp_path: Path) -> None:
    """A batch larger than the bound goes whole into a fresh file; the next batch rotates
    it to .1 first (a file passes the bound only by one batch alone)."""
    path = tmp_path / "system.log"
    file = RotatingFile(path, max_bytes=10, backups=3)
    try:
        file.write(b"a=1\nb=2\nc=3\nd=4\n")  # 16 bytes, one batch
        assert path.read_bytes() == b"a=1\nb=2\nc=3\nd=4\n"
        file.write(b"e=5\n")
        file.write(b"f=6\n")  # 8 bytes: fits
        file.write(b"g=7\n")  # would make 12: rotates first
    finally:
        file.close()
    assert (tmp_path / "system.log.2").read_bytes() == b"a=1\nb=2\nc=3\nd=4\n"
    assert (tmp_path / "system.log.1").read_bytes() == b"e=5\nf=6\n"
    assert path.read_bytes() == b"g=7\n"


@pytest.mark.timeout(10)
def test_request_reopen_only_sets_a_flag_and_the_next_write_reopens(tmp_path: Path) -> None:
    """Asking for a reopen touches no file (signal-safe); the next write, even of nothing,
    creates the path anew, and later lines go there, not to the moved file."""
    path = tmp_path / "system.log"
    moved = tmp_path / "system.log.moved"
    file = RotatingFile(path)
    try:
        file.write(b"before=1\n")
        path.rename(moved)
        file.write(b"unreopened=1\n")  # still the open file, now named .moved
        file.request_reopen()
        assert not path.exists()
        file.write(b"")
        assert path.exists()
        file.write(b"after=1\n")
    finally:
        file.close()
    assert moved.read_bytes() == b"before=1\nunreopened=1\n"
    assert path.read_bytes() == b"after=1\n"


@pytest.mark.timeout(20)
def test_reopen_after_the_file_was_moved_loses_no_line(tmp_path: Path) -> None:
    """logrotate moves the log, then asks for a reopen: every line lands in one of the two
    files exactly once, and lines emitted once the new file exists land in it only."""
    path = tmp_path / "system.log"
    moved = tmp_path / "system.log.1"
    log = open_log(path)
    try:
        for n in range(100, 110):
            log.emit(Event.SERVER_STOP, open_streams=n)
        wait_until(lambda: len(lines_of(path)) == 10, "first lines written")
        path.rename(moved)
        for n in range(110, 120):  # the writer may put these in either file
            log.emit(Event.SERVER_STOP, open_streams=n)
        log.reopen()
        wait_until(path.exists, "the path reopened")
        for n in range(120, 130):
            log.emit(Event.SERVER_STOP, open_streams=n)
        wait_until(lambda: "open_streams=129" in path.read_text(encoding="utf-8"), "last line")
    finally:
        log.close()
    old = [int(line.rpartition("=")[2]) for line in lines_of(moved)]
    new = [int(line.rpartition("=")[2]) for line in lines_of(path)]
    assert old + new == list(range(100, 130))
    assert old[:10] == list(range(100, 110))
    assert new[-10:] == list(range(120, 130))


@pytest.mark.timeout(20)
def test_sighup_with_the_installed_handler_reopens_the_log(tmp_path: Path) -> None:
    """`install_sighup_reopen` + SIGHUP after a move: the writer recreates the path and
    new lines go there (the previous SIGHUP handler is restored afterwards)."""
    path = tmp_path / "system.log"
    moved = tmp_path / "system.log.1"
    previous = signal.getsignal(signal.SIGHUP)
    log = open_log(path)
    try:
        install_sighup_reopen(log)
        log.emit(Event.SERVER_STOP, open_streams=1)
        wait_until(lambda: len(lines_of(path)) == 1, "first line written")
        path.rename(moved)
        os.kill(os.getpid(), signal.SIGHUP)
        wait_until(path.exists, "the path reopened after SIGHUP")
        log.emit(Event.SERVER_STOP, open_streams=2)
        wait_until(lambda: len(lines_of(path)) == 1, "second line written")
    finally:
        log.close()
        signal.signal(signal.SIGHUP, previous)
    assert [line.rpartition(" ")[2] for line in lines_of(moved)] == ["open_streams=1"]
    assert [line.rpartition(" ")[2] for line in lines_of(path)] == ["open_streams=2"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"log_max_mb": -1.0}, "--log-max-mb must be a size >= 0"),
        ({"log_max_mb": float("nan")}, "--log-max-mb must be a size >= 0"),
        ({"log_max_mb": float("inf")}, "--log-max-mb must be a size >= 0"),
        ({"log_max_mb": 1e-9}, "--log-max-mb 1e-09 is under one byte"),
        ({"log_max_mb": 1.0, "log_file": None}, "--log-file - writes to stdout"),
        ({"log_backups": 0}, "--log-backups must be >= 1"),
    ],
)
def test_rotation_settings_that_cannot_work_are_refused_naming_the_flag(
    settings: dict[str, object], message: str
) -> None:
    """Each bad rotation setting is a ConfigError whose message names the flag."""
    with pytest.raises(ConfigError) as caught:
        ServerConfig(**settings)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_log_max_mb_is_mebibytes_and_zero_or_none_never_rotates() -> None:
    """`--log-max-mb 1.5` is 1.5 MiB in bytes; 0 and None both mean no rotation."""
    assert ServerConfig(log_max_mb=1.5).log_max_bytes == int(1.5 * MIB)
    assert ServerConfig(log_max_mb=0).log_max_bytes is None
    assert ServerConfig().log_max_bytes is None
    assert ServerConfig().log_backups == 5


def test_serve_refuses_a_negative_log_max_mb_with_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The flag reaches the config: a bad value is a usage error before any server starts."""
    assert main(["serve", "--port", "0", "--log-max-mb", "-1"]) == ExitCode.USAGE
    assert "--log-max-mb must be a size >= 0" in capsys.readouterr().err


def test_event_log_refuses_rotation_on_stdout() -> None:
    """Rotating stdout cannot work, so EventLog says so instead of ignoring max_bytes."""
    with pytest.raises(ConfigError, match="needs a log file"):
        EventLog(None, max_bytes=1024)


#: Lines `_stream` writes.
STREAM_LINES = 8


def _stream(log: EventLog, n: int) -> None:
    trace, session, sid = f"t{n}", f"s{n % 3}", f"r{n}"
    log.emit(Event.STREAM_START, trace=trace, session=session, stream_id=sid, model="m",
             prompt_chars=5)  # fmt: skip
    log.emit(Event.STREAM_REGISTERED, trace=trace, session=session, stream_id=sid, generation=1)
    log.emit(Event.FLUSH_SCHEDULED, request_id=sid, delay_ms=75)
    log.emit(Event.FLUSH_START, request_id=sid, size=20)
    log.emit(Event.FLUSH_DONE, request_id=sid, tokens_sent=4, size=20)
    log.emit(Event.CLEANUP_BUFFER, request_id=sid)
    log.emit(Event.EVENT_BUFFERS_CLEANED, trace=trace, request_id=sid)
    log.emit(Event.STREAM_END, trace=trace, session=session, stream_id=sid, duration_ms=300,
             reason="completed", tokens=4, cleanup_done=True)  # fmt: skip


@pytest.mark.timeout(30)
def test_diagnose_reads_a_set_this_rotation_wrote_as_one_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Streams whose lines straddle rotations: `jarvis diagnose system.log` finds the
    rotated files, reads them oldest first, and sees every stream start and end (healthy)."""
    path = tmp_path / "system.log"
    log = EventLog(path, strict=True, flush_interval=TICK, max_bytes=2000, backups=50)
    streams = 30
    try:
        log.emit(Event.SERVER_START, version="0", host="127.0.0.1", port=1, pid=1,
                 source="synthetic", log_format="logfmt", cancel_wait_ms=2000, flush_ms=75,
                 flush_bytes=1024, faults="none", registry="memory", worker=0,
                 on_busy="supersede", resume_ttl_ms=0, ping_ms=15000)  # fmt: skip
        for n in range(streams):
            _stream(log, n)
            if n % 4 == 3:  # several batches, so several rotations
                # Every line emitted so far is in the files (counting lines, not growth:
                # the writer may have written the batch before a size could be taken).
                emitted = 1 + STREAM_LINES * (n + 1)
                wait_until(
                    lambda emitted=emitted: (
                        sum(len(lines_of(f)) for f in tmp_path.iterdir()) == emitted
                    ),
                    "a batch written",
                )
    finally:
        log.close()
    rotated = sorted(p.name for p in tmp_path.iterdir() if p.name != "system.log")
    assert len(rotated) >= 3, rotated
    assert not (tmp_path / f"system.log.{len(rotated) + 1}").exists()

    code = main(["diagnose", str(path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["stats"]["streams"] == streams
    assert report["stats"]["ended"] == {"completed": streams}
    assert report["open_streams"] == 0
    assert report["verdict"] == "healthy"
    assert code == ExitCode.OK
    assert report["coverage"]["sources"][-1] == str(path)
    assert len(report["coverage"]["sources"]) == len(rotated) + 1


def _chat(url: str, session: str) -> bytes:
    body = {"messages": [{"role": "user", "content": "Long essay"}], "stream": True}
    headers = {"x-session-id": session}
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=10
    ) as response:
        return response.read()


@pytest.mark.e2e
@pytest.mark.timeout(30)
def test_jarvis_serve_rotates_its_log_by_size(server_factory) -> None:  # type: ignore[no-untyped-def]
    """The flags reach the server: with --log-max-mb it rotates while streaming and keeps
    --log-backups old files."""
    # A stream logs ~0.7 KB since a flush is one line: 4 KB needs more of them.
    server = server_factory("--log-max-mb", "0.004", "--log-backups", "2", "--token-rate", "0")
    for i in range(12):
        assert _chat(server.url, f"rot{i}").endswith(b"data: [DONE]\n\n")
    rotated = Path(f"{server.log_path}.1")
    deadline = time.monotonic() + 5
    while not rotated.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rotated.exists()
    assert not Path(f"{server.log_path}.3").exists()  # --log-backups 2


@pytest.mark.e2e
@pytest.mark.timeout(30)
def test_jarvis_serve_reopens_its_log_on_sighup(server_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """logrotate's move-then-HUP: after SIGHUP the server writes to a new file at
    --log-file (no rotation configured, so only the handler can create it)."""
    server = server_factory("--token-rate", "0")
    path = server.log_path
    server.wait_for_event("server_start")
    path.rename(tmp_path / "moved.log")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while not path.exists() and time.monotonic() < deadline:
        _chat(server.url, "after")  # anything that logs makes the writer wake and write
    assert path.exists(), "no new log file after SIGHUP"
    server.wait_for_event("stream_end", session="after")
    assert server.proc.poll() is None, "SIGHUP must not stop the server"
