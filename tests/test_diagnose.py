"""`jarvis diagnose` on hand-built logs: every finding, every input form, every output."""

from __future__ import annotations

import gzip
import json
import os
import random
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from jarvis_cli.diagnose.follow import Follower
from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.logs import rules
from jarvis_cli.logs.analysis import Analyzer
from jarvis_cli.logs.engine import ENGINES, PURE_ENV, default_engine
from jarvis_cli.logs.findings import FindingId
from jarvis_cli.logs.sources import Sources
from jarvis_cli.main import main

from . import cli
from .logfixtures import (
    BARE_SUPERSEDE_ANNOTATED,
    BARE_SUPERSEDE_TIMESTAMPED,
    LogBuilder,
    healthy_supersede,
)


@pytest.fixture(autouse=True, params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs once per logfmt hot loop: C (where built) and Python."""
    monkeypatch.setenv(PURE_ENV, "1" if request.param == "python" else "0")
    return str(request.param)


def run_json(path: Path, *args: str) -> tuple[int, dict[str, object]]:
    proc = cli.run("diagnose", str(path), "--json", *args)
    report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    if report:
        assert report["coverage"]["engine"] == default_engine()
    return proc.returncode, report


def diagnose_text(tmp_path: Path, text: str, *args: str, name: str = "system.log"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return run_json(path, *args)


def ids(report: dict[str, object]) -> set[str]:
    return {f["id"] for f in report["findings"]}  # type: ignore[index,union-attr]


def test_healthy_supersede_is_healthy_with_full_coverage(tmp_path: Path) -> None:
    """A healthy supersede as jarvis logs it: exit 0, no findings, every node judged."""
    code, report = diagnose_text(tmp_path, healthy_supersede().text())
    assert code == ExitCode.OK
    assert report["verdict"] == "healthy"
    assert report["findings"] == []
    assert report["coverage"]["lifecycle_events"] > 20
    assert report["stats"]["streams"] == 2
    assert report["stats"]["ended"] == {"superseded": 1, "completed": 1}


@pytest.mark.parametrize("text", [BARE_SUPERSEDE_ANNOTATED, BARE_SUPERSEDE_TIMESTAMPED])
def test_both_bare_supersede_orderings_are_healthy(tmp_path: Path, text: str) -> None:
    """A supersede in the original server's bare lines (arrows and all), in either order,
    reads as healthy."""
    code, report = diagnose_text(tmp_path, text)
    assert code == ExitCode.OK, report["findings"]
    assert report["stats"]["streams"] == 2
    assert report["coverage"]["lifecycle_events"] >= 8


def test_json_lines_give_the_same_verdict_as_logfmt(tmp_path: Path) -> None:
    """--log-format json output: same streams, same (empty) findings."""
    code, report = diagnose_text(tmp_path, healthy_supersede().json_text())
    assert code == ExitCode.OK
    assert report["stats"]["streams"] == 2
    assert report["stats"]["flushes"] == healthy_supersede().text().count("flush_done")


def test_concurrent_streams_found_with_the_proving_lines(tmp_path: Path) -> None:
    """B emits while the older A of its session is open and unfenced: error, evidence lines
    are A's start, B's start and B's first emitting flush_done."""
    log = LogBuilder().start(1, "s").flush(1).start(2, "s").flush(2).flush(1)
    log.cleanup(1, "s").cleanup(2, "s")
    code, report = diagnose_text(tmp_path, log.text())
    assert code == ExitCode.FAILURE
    (finding,) = report["findings"]
    assert finding["id"] == "concurrent_streams"
    assert finding["session"] == "s"
    texts = [e["text"] for e in finding["evidence"]]
    assert any("event=stream_start trace=t1" in t for t in texts)
    assert any("event=flush_done request_id=r2" in t for t in texts)
    assert all(e["file"].endswith("system.log") and e["line"] > 0 for e in finding["evidence"])


def test_fenced_predecessor_is_not_concurrent(tmp_path: Path) -> None:
    """A overran the wait and was fenced before B emitted: no concurrent_streams."""
    log = LogBuilder().start(1, "s").flush(1).start(2, "s")
    log.emit("stream_fenced", trace="t1", session="s", stream_id="r1", by_trace="t2")
    log.flush(2).cleanup(2, "s").cleanup(1, "s", reason="superseded")
    _code, report = diagnose_text(tmp_path, log.text())
    assert "concurrent_streams" not in ids(report)


def test_flush_stuck_at_end_of_input(tmp_path: Path) -> None:
    """flush_start with no flush_done, and the log goes on for seconds: flush_stuck."""
    log = LogBuilder().start(1, "s").emit("flush_start", request_id="r1", size=3)
    log.at(5).emit("loop_blocked", level="error", lag_ms=5000,
                   stack="jarvis/faults.py:60:blocking_flush <- x")  # fmt: skip
    code, report = diagnose_text(tmp_path, log.text())
    assert code == ExitCode.FAILURE
    assert {"flush_stuck", "loop_blocked"} <= ids(report)
    blocked = next(f for f in report["findings"] if f["id"] == "loop_blocked")
    assert "faults.py:60:blocking_flush" in blocked["message"]


def test_stream_not_ended_only_past_stale_after(tmp_path: Path) -> None:
    """An open stream is 'not ended' once older than --stale-after at the end of input;
    younger, it is still open: a warning (streams_open), never a pass."""
    log = LogBuilder().start(1, "s").flush(1).at(40).start(2, "x").flush(2).cleanup(2, "x")
    _, report = diagnose_text(tmp_path, log.text())
    assert ids(report) == {"stream_not_ended"}
    code, lenient = diagnose_text(tmp_path, log.text(), "--stale-after", "2m")
    assert ids(lenient) == {"streams_open"}
    assert code == ExitCode.OK


def test_cancel_ignored_when_flushing_goes_on(tmp_path: Path) -> None:
    """stream_cancelled, then several regular flushes: cancel_ignored."""
    log = LogBuilder().start(1, "s").flush(1).cancel(1, "s")
    for _ in range(5):
        log.flush(1)
    log.cleanup(1, "s", reason="completed")
    _, report = diagnose_text(tmp_path, log.text())
    assert "cancel_ignored" in ids(report)


def test_cleanup_flush_after_cancel_is_not_cancel_ignored(tmp_path: Path) -> None:
    """The cleanup's own flush (flush_on_cleanup) after a cancel is healthy."""
    log = LogBuilder().start(1, "s").flush(1).cancel(1, "s")
    log.emit("flush_on_cleanup", request_id="r1", size=4).flush(1, scheduled=False)
    log.cleanup(1, "s", reason="superseded")
    _, report = diagnose_text(tmp_path, log.text())
    assert report["findings"] == []


def test_cleanup_incomplete_and_flush_task_leak(tmp_path: Path) -> None:
    """stream_end cleanup_done=False, no event_buffers_cleaned, a scheduled flush never
    resolved: cleanup_incomplete and flush_task_leak."""
    log = LogBuilder().start(1, "s").flush(1).emit("flush_scheduled", request_id="r1", delay_ms=75)
    log.emit("stream_end", trace="t1", session="s", stream_id="r1", duration_ms=3,
             reason="completed", tokens=4, cleanup_done=False)  # fmt: skip
    _, report = diagnose_text(tmp_path, log.text())
    assert {"cleanup_incomplete", "flush_task_leak"} <= ids(report)


def test_cancel_timeouts_is_a_warning_unless_fail_on_warning(tmp_path: Path) -> None:
    """prev_stream_timeout_on_cancel: a warning (exit 0), exit 1 with --fail-on warning."""
    log = healthy_supersede().emit(
        "prev_stream_timeout_on_cancel", level="warning", session="s1", trace="t9",
        prev_trace="t8", waited_ms=2001,
    )  # fmt: skip
    code, report = diagnose_text(tmp_path, log.text())
    assert code == ExitCode.OK
    (finding,) = report["findings"]
    assert finding["id"] == "cancel_timeouts"
    assert finding["severity"] == "warning"
    assert "2001" in finding["message"] or "2000" in finding["message"]
    code, _ = diagnose_text(tmp_path, log.text(), "--fail-on", "warning")
    assert code == ExitCode.FAILURE


def test_no_batching_when_every_flush_is_one_token(tmp_path: Path) -> None:
    """Tokens flow one per flush and nothing is ever scheduled: no_batching warning."""
    log = LogBuilder().start(1, "s")
    for _ in range(30):
        log.flush(1, tokens=1, scheduled=False)
    log.cleanup(1, "s")
    _, report = diagnose_text(tmp_path, log.text())
    assert ids(report) == {"no_batching"}


def test_every_finding_id_has_one_rule_named_for_it() -> None:
    """rules.py holds one function per finding id, of the id's name, and no other public
    name: a new finding is a new rule there."""
    assert rules.__all__ == sorted(rules.__all__) == sorted(i.value for i in FindingId)
    assert all(callable(getattr(rules, name)) for name in rules.__all__)


def test_log_without_lifecycle_events_is_unusable_never_healthy(tmp_path: Path) -> None:
    """An nginx log proves nothing: exit 3, verdict unusable."""
    code, report = diagnose_text(tmp_path, '127.0.0.1 - - "GET / HTTP/1.1" 200 12\n' * 50)
    assert code == ExitCode.UNAVAILABLE
    assert report["verdict"] == "unusable"


def test_missing_file_is_exit_3_with_a_clear_message(tmp_path: Path, capsys) -> None:
    """An unreadable input: exit 3 and the path on stderr, no traceback."""
    code = main(["diagnose", str(tmp_path / "nope.log")])
    err = capsys.readouterr().err
    assert code == ExitCode.UNAVAILABLE
    assert "nope.log" in err.replace("\n", "")  # rich wraps a long temporary path
    assert "Traceback" not in err


def test_bad_options_are_usage_errors(capsys) -> None:
    """--stale-after, --since and --fail-on are validated: exit 2 with the reason."""
    assert main(["diagnose", "x.log", "--stale-after", "soon"]) == ExitCode.USAGE
    assert main(["diagnose", "x.log", "--since", "yesterday"]) == ExitCode.USAGE
    assert main(["diagnose", "x.log", "--fail-on", "info"]) == ExitCode.USAGE
    assert "--fail-on takes error or warning" in capsys.readouterr().err


def test_gzip_rotated_set_and_stdin_are_read(tmp_path: Path) -> None:
    """system.log.2.gz, system.log.1 and system.log are read oldest first as one log;
    stdin gives the same verdict."""
    log = LogBuilder().start(1, "s").flush(1)
    first = log.text()
    log.lines.clear()
    log.flush(1)
    second = log.text()
    log.lines.clear()
    log.cleanup(1, "s")
    third = log.text()
    with gzip.open(tmp_path / "system.log.2.gz", "wt") as handle:
        handle.write(first)
    (tmp_path / "system.log.1").write_text(second)
    (tmp_path / "system.log").write_text(third)
    code, report = run_json(tmp_path / "system.log")
    assert code == ExitCode.OK, report["findings"]
    assert [Path(s).name for s in report["coverage"]["sources"]] == [
        "system.log.2.gz", "system.log.1", "system.log",
    ]  # fmt: skip
    proc = cli.run("diagnose", "-", "--json", stdin=first + second + third)
    assert proc.returncode == ExitCode.OK
    assert json.loads(proc.stdout)["stats"]["streams"] == 1


def test_since_and_until_narrow_the_window(tmp_path: Path) -> None:
    """Only the lines inside [--since, --until) are judged."""
    log = LogBuilder(start=1795317000.0).start(1, "a").flush(1).cleanup(1, "a")
    log.at(100).start(2, "b").flush(2).cleanup(2, "b")
    _, report = diagnose_text(tmp_path, log.text(), "--since", "1795317050")
    assert report["stats"]["streams"] == 1
    _, report = diagnose_text(tmp_path, log.text(), "--until", "1795317050")
    assert report["stats"]["streams"] == 1


def test_session_filter_keeps_only_that_sessions_findings(tmp_path: Path) -> None:
    """--session narrows the findings to one session."""
    log = LogBuilder().start(1, "a").flush(1).start(2, "a").flush(2)
    log.cleanup(1, "a").cleanup(2, "a")
    log.start(3, "b").flush(3).cleanup(3, "b", done=False)
    _, everything = diagnose_text(tmp_path, log.text())
    assert ids(everything) == {"concurrent_streams", "cleanup_incomplete"}
    _, only_b = diagnose_text(tmp_path, log.text(), "--session", "b")
    assert ids(only_b) == {"cleanup_incomplete"}


def test_junit_has_one_testcase_per_invariant(tmp_path: Path) -> None:
    """--junit: a testcase per leaf of the tree; the failing one carries the evidence."""
    log = LogBuilder().start(1, "s").flush(1).start(2, "s").flush(2).cleanup(1, "s")
    log.cleanup(2, "s")
    path = tmp_path / "system.log"
    path.write_text(log.text())
    junit = tmp_path / "out" / "diagnose.xml"
    code = main(["diagnose", str(path), "--junit", str(junit)])
    assert code == ExitCode.FAILURE
    suite = ET.parse(junit).getroot()
    names = [case.get("name") for case in suite.iter("testcase")]
    assert len(names) == 9
    assert "concurrent_streams" in names
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["concurrent_streams"]


def test_human_report_shows_coverage_first_then_tree_and_diagnosis(tmp_path: Path, capsys) -> None:
    """The rich report: coverage line first, the failing path, the remedy."""
    log = LogBuilder().start(1, "s").flush(1).start(2, "s").flush(2).cleanup(1, "s")
    log.cleanup(2, "s")
    path = tmp_path / "system.log"
    path.write_text(log.text())
    assert main(["diagnose", str(path)]) == ExitCode.FAILURE
    output = capsys.readouterr().out
    assert output.startswith("coverage ")
    assert "diagnosis: One stream per session? → No two streams" in output
    assert "remedy:" in output


def test_random_bytes_and_cut_lines_never_crash(tmp_path: Path) -> None:
    """Fuzz: binary noise, lines cut anywhere, huge lines: an exit code, never a traceback."""
    rng = random.Random(7)
    healthy = healthy_supersede().text().encode()
    for round_no in range(12):
        blob = bytearray()
        for _ in range(40):
            choice = rng.random()
            if choice < 0.3:
                blob += bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
            elif choice < 0.8:
                cut = rng.randrange(len(healthy))
                blob += healthy[cut : cut + rng.randrange(400)]
            else:
                blob += b"event=flush_done request_id=" + b"x" * rng.randrange(5000) + b"\n"
        path = tmp_path / f"fuzz{round_no}.log"
        path.write_bytes(bytes(blob))
        proc = cli.run("diagnose", str(path), "--json")
        assert proc.returncode in (0, 1, 3), proc.stderr
        assert "Traceback" not in proc.stderr
        json.loads(proc.stdout)


def test_follow_handles_partial_lines_rotation_and_truncation(tmp_path: Path) -> None:
    """--follow by name: a partial line waits for its newline; a rotated file is drained
    and the new one read from its start; a truncated file is read again from 0."""
    path = tmp_path / "system.log"
    log = healthy_supersede()
    lines = log.text()
    sources = Sources()
    analyzer = Analyzer()
    follower = Follower([str(path)], analyzer, sources)
    assert follower.poll() == 0  # not there yet: no error
    half = len(lines) // 2
    path.write_text(lines[:half])
    follower.poll()
    seen = analyzer.coverage.recognised
    with path.open("a") as handle:
        handle.write(lines[half:])
    follower.poll()
    assert analyzer.coverage.recognised == lines.count("event=")
    assert analyzer.stats.streams == 2 and seen < analyzer.coverage.recognised
    # rotation: rename away, start a new file
    os.rename(path, tmp_path / "system.log.1")
    path.write_text(LogBuilder().start(9, "z").text())
    follower.poll()
    assert analyzer.stats.streams == 3
    assert any("rotated" in n for n in follower.files[0].notes)
    # truncation: the same file emptied (`: > system.log`), then written again
    path.write_text("")
    follower.poll()
    path.write_text(LogBuilder().start(7, "y").text())
    follower.poll()
    assert analyzer.stats.streams == 4
    assert any("truncated" in n for n in follower.files[0].notes)
    sources.close()


def _leaf(tree: dict[str, object], question: str) -> dict[str, object]:
    pending = [tree]
    while pending:
        node = pending.pop()
        if node["question"] == question:
            return node
        pending += node["children"]  # type: ignore[arg-type]
    raise AssertionError(question)


def test_streams_that_never_ended_are_a_warning_with_the_open_ones_as_evidence(
    tmp_path: Path,
) -> None:
    """48 streams started and never ended, 2 s before the end of the log (younger than
    --stale-after): "Does every stream reach stream_end?" is a warning, not a pass, and
    streams_open counts them and quotes their stream_start lines (the first 20)."""
    log = LogBuilder()
    for n in range(50):
        log.start(n, f"s{n}").flush(n)
    for n in range(2):
        log.cleanup(n, f"s{n}")
    log.at(2).emit("loop_lag", lag_ms=1, max_lag_ms=2, active_streams=48)
    code, report = diagnose_text(tmp_path, log.text())
    assert code == ExitCode.OK  # a warning: the streams may still be running
    (finding,) = report["findings"]
    assert finding["id"] == "streams_open"
    assert finding["severity"] == "warning"
    assert finding["message"].startswith("48 stream(s) started and have no stream_end")
    assert len(finding["evidence"]) == 20
    assert all("event=stream_start" in e["text"] for e in finding["evidence"])
    leaf = _leaf(report["tree"], "Does every stream reach stream_end?")
    assert (leaf["status"], leaf["count"]) == ("warn", 1)
    assert report["open_streams"] == 48


def test_a_clean_log_claims_only_what_it_shows(tmp_path: Path) -> None:
    """The closing line of a healthy report says what the log proves: every stream ended,
    and one stream per session only when stream_start names sessions; cleanup only when
    it is recorded."""
    log = LogBuilder().emit("stream_start", trace="a").emit("stream_end", trace="a")
    path = tmp_path / "bare.log"
    path.write_text(log.text())
    proc = cli.run("diagnose", str(path))
    assert proc.returncode == ExitCode.OK
    assert "every one of 1 streams reached stream_end" in proc.stdout
    assert "one stream per session" not in proc.stdout
    assert "cleanup" not in proc.stdout.split("healthy:")[-1]


def test_slow_cancels_warn_and_name_the_frame_the_watchdog_saw(tmp_path: Path) -> None:
    """A new prompt waited 1.5 s of a 2 s cancel wait for the old stream's cleanup, while
    the watchdog logged the loop stuck in `sync_cleanup`: slow_cancels, a warning that
    names the frame; a timeout whose wait began after the loop recovered does not."""
    log = LogBuilder().emit("server_start", version="0", cancel_wait_ms=2000)
    log.start(1, "s").flush(1).cancel(1, "s")
    log.at(0.5).emit("loop_blocked", level="error", lag_ms=900,
                     stack="app.py:12:sync_cleanup <- app.py:30:finally_block")  # fmt: skip
    log.at(0.5).cleanup(1, "s", reason="superseded")
    log.emit("prev_stream_finished_cleanly", session="s", trace="t2", prev_trace="t1",
             waited_ms=1500)  # fmt: skip
    log.emit("loop_recovered", blocked_ms=900)
    log.start(2, "s").flush(2).cleanup(2, "s")
    _, report = diagnose_text(tmp_path, log.text())
    slow = next(f for f in report["findings"] if f["id"] == "slow_cancels")
    assert slow["severity"] == "warning"
    assert "waited 1000 ms or more (max 1500 ms)" in slow["message"]
    assert "stuck in: app.py:12:sync_cleanup" in slow["message"]
    assert any("prev_stream_finished_cleanly" in e["text"] for e in slow["evidence"])
    leaf = _leaf(report["tree"], "Does the previous stream clean up within the cancel wait?")
    assert leaf["status"] == "warn"
    log.at(5).emit("prev_stream_timeout_on_cancel", level="warning", session="s", trace="t3",
             prev_trace="t2", waited_ms=2000)  # fmt: skip
    _, report = diagnose_text(tmp_path, log.text())
    timeouts = next(f for f in report["findings"] if f["id"] == "cancel_timeouts")
    assert "sync_cleanup" not in timeouts["message"]  # blocked 5 s before its 2 s wait


def test_a_cleanup_that_outlived_the_cancel_wait_and_then_finished_is_slow_not_a_leak(
    tmp_path: Path,
) -> None:
    """The guard's log for a generator whose `finally` took 3 s with a 2 s cancel wait: A's
    stream_end says cleanup_done=False, B logs the timeout, and stream_cleanup_finished
    follows. A warning about the timeout, never cleanup_incomplete; without the later line,
    cleanup_incomplete (a stream that never cleaned up)."""
    log = LogBuilder().emit("server_start", version="0", cancel_wait_ms=2000)
    log.start(1, "s").flush(1, one_line=True).cancel(1, "s")
    log.at(2.0).emit("prev_stream_timeout_on_cancel", level="warning", session="s", trace="t2",
                     prev_trace="t1", waited_ms=2000)  # fmt: skip
    log.emit("stream_end", trace="t1", session="s", stream_id="r1", duration_ms=2100,
             reason="superseded", tokens=4, cleanup_done=False)  # fmt: skip
    log.start(2, "s").flush(2, one_line=True)
    cut = len(log.lines)
    log.at(1.0).emit("stream_cleanup_finished", level="warning", trace="t1", session="s",
                     stream_id="r1", duration_ms=3100, cleanup_ms=3000)  # fmt: skip
    log.emit("stream_end", trace="t2", session="s", stream_id="r2", duration_ms=1000,
             reason="completed", tokens=4, cleanup_done=True)  # fmt: skip
    code, report = diagnose_text(tmp_path, log.text())
    found = ids(report)
    assert "cleanup_incomplete" not in found, report["findings"]
    assert "cancel_timeouts" in found
    assert code == ExitCode.OK
    leak = "\n".join(log.lines[:cut] + log.lines[cut + 1 :]) + "\n"
    code, report = diagnose_text(tmp_path, leak, name="leak.log")
    assert "cleanup_incomplete" in ids(report)
    assert code == ExitCode.FAILURE
