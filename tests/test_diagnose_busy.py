"""`jarvis diagnose` on the log of a busy session's policy: a queued prompt is neither a
leak nor two streams at once, even across two workers whose clocks disagree; a 409
refusal is the policy at work, counted, never an error finding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.logs.engine import ENGINES, PURE_ENV

from . import cli
from .logfixtures import LogBuilder

START = 1795317000.0


@pytest.fixture(autouse=True, params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs once per logfmt hot loop: C (where built) and Python."""
    monkeypatch.setenv(PURE_ENV, "1" if request.param == "python" else "0")
    return str(request.param)


def server(worker: int, at: float = START) -> LogBuilder:
    log = LogBuilder(at)
    return log.emit("server_start", version="0", host="h", port=1, pid=100 + worker,
                    source="s", log_format="logfmt", cancel_wait_ms=2000, flush_ms=75,
                    flush_bytes=1024, faults="none", registry="redis://r:6379/0",
                    worker=worker)  # fmt: skip


def run(paths: list[Path]) -> tuple[int, dict[str, object]]:
    proc = cli.run("diagnose", *map(str, paths), "--json")
    return proc.returncode, json.loads(proc.stdout)


def ids(report: dict[str, object]) -> set[str]:
    return {f["id"] for f in report["findings"]}  # type: ignore[index,union-attr]


def two_workers(tmp_path: Path, *, queued_line: bool) -> list[Path]:
    """A streams on worker 1 for a second; B, queued behind it on worker 2, starts once A
    has ended, but worker 2's clock runs 200 ms behind: merged by time, B's stream_start
    and first flush come before A's stream_end."""
    one, two = server(1), server(2)
    one.t = START + 0.1
    one.start(1, "s")
    for _ in range(10):
        one.at(0.09).flush(1, one_line=True)
    one.t = START + 1.0
    one.cleanup(1, "s")
    two.t = START + 0.8  # A's end (1.0 on worker 1's clock) is 0.8 on worker 2's
    if queued_line:
        two.emit("stream_queued", session="s", trace="t2", prev_trace="t1", waited_ms=700)
    two.start(2, "s")
    for _ in range(3):
        two.at(0.05).flush(2, one_line=True)
    two.cleanup(2, "s")
    paths = [tmp_path / "system.w1.log", tmp_path / "system.w2.log"]
    paths[0].write_text(one.text(), encoding="utf-8")
    paths[1].write_text(two.text(), encoding="utf-8")
    return paths


def test_a_queued_prompt_on_another_worker_is_not_two_streams_at_once(tmp_path: Path) -> None:
    """stream_queued names the stream B waited for: that is the proof they never
    overlapped, whatever the two clocks say. Healthy, and the wait is counted."""
    code, report = run(two_workers(tmp_path, queued_line=True))
    assert code == ExitCode.OK, report["findings"]
    assert ids(report) == set()
    stats = report["stats"]
    assert stats["queued"] == 1  # type: ignore[index]
    assert stats["queue_wait_ms"]["max"] == pytest.approx(700, rel=0.03)  # type: ignore[index]


def test_without_the_queue_line_the_same_log_reads_as_two_streams_at_once(
    tmp_path: Path,
) -> None:
    """The control: the same skewed log without stream_queued is concurrent_streams, so
    the line is what tells the two apart."""
    code, report = run(two_workers(tmp_path, queued_line=False))
    assert code == ExitCode.FAILURE
    assert "concurrent_streams" in ids(report)


def test_a_409_refusal_is_counted_and_is_no_finding(tmp_path: Path) -> None:
    """request_rejected status=409 (session_busy, queue_timeout) while A streams: A ends
    completed, no finding, and the refusals are counted as the policy's."""
    log = server(0)
    log.start(1, "s").flush(1, one_line=True)
    log.emit("request_rejected", level="warning", trace="x1", session="s", status=409,
             code="session_busy", message="session s is still answering")  # fmt: skip
    log.emit("request_rejected", level="warning", trace="x2", session="s", status=409,
             code="queue_timeout", message="session s was still answering")  # fmt: skip
    log.flush(1, one_line=True).cleanup(1, "s")
    path = tmp_path / "system.log"
    path.write_text(log.text(), encoding="utf-8")
    code, report = run([path])
    assert code == ExitCode.OK, report["findings"]
    assert ids(report) == set()
    stats = report["stats"]
    assert (stats["busy_rejected"], stats["rejected_requests"]) == (2, 2)  # type: ignore[index]
    assert stats["ended"] == {"completed": 1}  # type: ignore[index]
