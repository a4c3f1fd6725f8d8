"""The timeline page (`diagnose --html`, `verify-hang --html`, swarm's report folder):
what it draws, what it leaves out and says so, what it never loads, and its exit codes.

The page's behaviour in a real browser (zoom, search, findings) is in test_browser.py;
here, the file and its data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jarvis_cli.diagnose.report import build_report
from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.logs.engine import ENGINES, PURE_ENV
from jarvis_cli.logs.run import analyze
from jarvis_cli.timeline import record
from jarvis_cli.timeline.html import page_data

from . import cli
from .logfixtures import LogBuilder, healthy_supersede, random_log


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def diagnose(path: Path, *args: str, env_pure: bool = False) -> subprocess.CompletedProcess[str]:
    with pytest.MonkeyPatch.context() as patch:
        if env_pure:
            patch.setenv(PURE_ENV, "1")
        return cli.run("diagnose", str(path), *args)


def page(path: Path) -> dict[str, Any]:
    """The data a written page draws (its one JSON script element)."""
    text = path.read_text(encoding="utf-8")
    match = re.search(
        r'<script type="application/json" id="timeline-data">(.*?)</script>', text, re.S
    )
    assert match is not None, "no data element in the page"
    return json.loads(match.group(1))


def drawn(text: str, tmp_path: Path, engine: str = "c") -> dict[str, Any]:
    """The page data of a log, built in process (the recorder on the analyzer)."""
    path = tmp_path / "system.log"
    path.write_text(text, encoding="utf-8")
    recorder = record.Recorder()
    analyzer, sources = analyze([str(path)], engine=engine, attach=recorder.attach)
    try:
        report = build_report(analyzer)
        sources.resolve_findings(report.findings)
    finally:
        sources.close()
    return page_data(recorder.timeline, report, title="t")


def bars(data: dict[str, Any]) -> list[dict[str, Any]]:
    columns = data["bars"]
    return [
        {k: columns[k][i] for k in columns} | {"reason": data["reasons"][columns["reason"][i]]}
        for i in range(len(columns["lane"]))
    ]


def markers(data: dict[str, Any], lane: int) -> list[str]:
    m = data["markers"]
    return [data["kinds"][m["kind"][i]] for i in range(len(m["lane"])) if m["lane"][i] == lane]


def test_a_supersede_is_two_bars_in_one_lane_with_its_markers(tmp_path: Path, engine: str) -> None:
    """A superseded by B: one lane, A's bar ends (superseded) where B's began, and the
    lane shows the cancel, the cleanup steps and B's wait for A."""
    data = drawn(healthy_supersede().text(), tmp_path, engine)
    assert data["lanes"] == ["s1"]
    a, b = bars(data)
    assert (a["trace"], a["reason"], b["trace"], b["reason"]) == (
        "t1", "superseded", "t2", "completed",
    )  # fmt: skip
    assert 0 <= a["start"] < b["start"] < a["end"] < b["end"] <= data["span_ms"]
    assert a["flags"] & 1 and not b["flags"] & 1  # A was cancelled
    kinds = markers(data, 0)
    assert kinds.count("cancel") == 1
    assert kinds.count("prev_finished") == 1
    assert kinds.count("cleanup") >= 4  # cleanup_flush_task, cleanup_buffer x2, buffers cleaned
    assert data["verdict"] == "healthy" and data["findings"] == []


def test_flush_density_counts_every_flush_in_both_engines(tmp_path: Path, engine: str) -> None:
    """Density is per lane and adds up to the flushes the report counts, whether the C
    loop or the Python one read them, and sessions are lanes in order of appearance."""
    text = random_log(__import__("random").Random(7), steps=1500).text()
    data = drawn(text, tmp_path, engine)
    total = sum(data["density"]["n"])
    # Flushes of streams whose start is not in the log (after a restart) still count.
    assert total == text.count("event=flush_done")
    assert data["stats"]["flushes"] == total
    assert set(data["lanes"]) == {f"s{i}" for i in range(6)}


def test_one_line_flushes_draw_what_three_line_flushes_drew(tmp_path: Path, engine: str) -> None:
    """The same random run logged as an older server did (flush_scheduled, flush_start,
    flush_done) and as today's does (one `flush` line, named by trace): the same lanes,
    bars and flushes a lane (the times differ by the lines left out), as JSON lines (the
    line reader) too."""
    import random

    old = random_log(random.Random(7), steps=1500).text()
    new_log = random_log(random.Random(7), steps=1500, one_line=True)
    new = new_log.text()
    assert "event=flush trace=" in new and "event=flush_done" not in new
    before, after = drawn(old, tmp_path, engine), drawn(new, tmp_path, engine)

    def per_lane(data: dict[str, Any]) -> dict[int, int]:
        totals: dict[int, int] = {}
        for lane, n in zip(data["density"]["lane"], data["density"]["n"], strict=True):
            totals[lane] = totals.get(lane, 0) + n
        return totals

    assert per_lane(after) == per_lane(before)
    assert sum(after["density"]["n"]) == new.count("event=flush trace=")
    assert after["lanes"] == before["lanes"]
    assert [(b["trace"], b["reason"]) for b in bars(after)] == [
        (b["trace"], b["reason"]) for b in bars(before)
    ]
    assert per_lane(drawn(new_log.json_text(), tmp_path, engine)) == per_lane(after)


def test_density_from_json_logs_too(tmp_path: Path) -> None:
    """Another dialect (JSON lines, read by the line reader): same bars, same density."""
    log = healthy_supersede()
    path = tmp_path / "system.jsonl"
    path.write_text(log.json_text(), encoding="utf-8")
    out = tmp_path / "page.html"
    proc = diagnose(path, "--html", str(out))
    assert proc.returncode == ExitCode.OK, proc.stderr
    data = page(out)
    assert [b["reason"] for b in bars(data)] == ["superseded", "completed"]
    assert sum(data["density"]["n"]) == log.text().count("event=flush_done")


def test_a_never_ended_stream_and_a_blocked_loop_are_drawn(tmp_path: Path) -> None:
    """An unended stream is an open bar (end -1) with its finding; loop_blocked is a
    span from lag_ms before its line to loop_recovered."""
    log = LogBuilder().emit("server_start", version="0", pid=1, cancel_wait_ms=2000)
    log.start(1, "s1").flush(1)
    log.at(1.0).emit("loop_blocked", level="error", lag_ms=500, stack="x.py:1:f")
    log.at(0.25).emit("loop_recovered", blocked_ms=750)
    log.at(40).emit("loop_lag", lag_ms=1, max_lag_ms=2, active_streams=1)
    data = drawn(log.text(), tmp_path)
    (bar,) = bars(data)
    assert bar["end"] == -1 and bar["reason"] == "open"
    ((start, end, lag, _),) = data["loop"]
    assert end - start == pytest.approx(750 + 1, abs=2)  # from lag_ms before, to recovered
    assert lag == 751
    # The page spans the whole log (its last line, 40 s on), and the open bar runs to it.
    assert data["span_ms"] == pytest.approx(41_260, abs=20)
    found = {f["id"]: f for f in data["findings"]}
    assert {"stream_not_ended", "loop_blocked"} <= set(found)
    assert found["stream_not_ended"]["bars"] == [0]
    assert all(ev["t"] is not None for ev in found["loop_blocked"]["evidence"])


def test_an_overlap_finding_points_at_both_streams(tmp_path: Path) -> None:
    """Two streams of a session emitting at once: the finding names both bars, so a
    click on it highlights the pair, and its evidence lines carry their times."""
    log = LogBuilder().emit("server_start", version="0", pid=1, cancel_wait_ms=2000)
    log.start(1, "s1").flush(1).start(2, "s1").flush(2).flush(1)
    log.cleanup(1, "s1").cleanup(2, "s1")
    data = drawn(log.text(), tmp_path)
    (finding,) = [f for f in data["findings"] if f["id"] == "concurrent_streams"]
    assert finding["bars"] == [0, 1]
    assert finding["lane"] == 0
    assert len(finding["evidence"]) >= 2
    assert all(isinstance(ev["t"], int) for ev in finding["evidence"])


def test_past_the_limits_it_aggregates_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More sessions than lanes, more streams than bars: the rest is counted, drawn as
    density in one lane, said on the page; a finding's session still gets a lane."""
    monkeypatch.setattr(record, "MAX_LANES", 5)
    monkeypatch.setattr(record, "MAX_BARS", 4)
    monkeypatch.setattr("jarvis_cli.timeline.html.MAX_LANES", 5)
    log = LogBuilder().emit("server_start", version="0", pid=1, cancel_wait_ms=2000)
    for n in range(12):
        log.start(n, f"s{n}").flush(n).cleanup(n, f"s{n}")
    log.start(99, "s11").flush(99).start(98, "s11").flush(98).flush(99)  # an overlap in s11
    log.cleanup(99, "s11").cleanup(98, "s11")
    data = drawn(log.text(), tmp_path)
    assert data["lanes"][:5] == ["s0", "s1", "s2", "s3", "s4"]
    assert "(other streams)" in data["lanes"]
    assert len(data["bars"]["lane"]) == 4
    other = data["lanes"].index("(other streams)")
    lanes = data["density"]["lane"]
    assert sum(n for lane, n in zip(lanes, data["density"]["n"], strict=True) if lane == other) > 0
    assert sum(data["density"]["n"]) == log.text().count("event=flush_done")
    (finding,) = [f for f in data["findings"] if f["id"] == "concurrent_streams"]
    assert data["lanes"][finding["lane"]] == "s11"
    notes = " ".join(data["notes"])
    assert "12 sessions: the first 5 seen have a lane each" in notes
    assert "1 session(s) named by findings" in notes
    assert "streams have no bar" in notes


def test_the_page_is_self_contained_and_the_exit_code_unchanged(tmp_path: Path) -> None:
    """Offline: no URL to load, a CSP that forbids any; the same exit code and the same
    stdout as without --html (healthy 0, unhealthy 1)."""
    healthy = tmp_path / "healthy.log"
    healthy.write_text(healthy_supersede().text(), encoding="utf-8")
    sick = tmp_path / "sick.log"
    log = LogBuilder().emit("server_start", version="0", pid=1, cancel_wait_ms=2000)
    sick.write_text(log.start(1, "s1").flush(1).start(2, "s1").flush(2).flush(1).text())
    for path, code in ((healthy, ExitCode.OK), (sick, ExitCode.FAILURE)):
        out = tmp_path / f"{path.stem}.html"
        plain = diagnose(path, "--json")
        with_html = diagnose(path, "--json", "--html", str(out))
        assert plain.returncode == with_html.returncode == code
        assert json.loads(plain.stdout)["findings"] == json.loads(with_html.stdout)["findings"]
        assert f"timeline: {out}" in with_html.stderr
        html = out.read_text(encoding="utf-8")
        assert "default-src 'none'" in html
        assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
        assert not re.search(r"@import|url\(|fetch\(|XMLHttpRequest|WebSocket", html)
        assert html.count("<script") == 2 and html.count("</script>") == 2


def test_hostile_session_ids_cannot_break_out_of_the_page(tmp_path: Path) -> None:
    """Session ids come from clients: one that closes the script element or opens a tag
    stays data (escaped in the JSON, written with textContent by the script)."""
    evil = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"
    log = LogBuilder().emit("server_start", version="0", pid=1, cancel_wait_ms=2000)
    log.start(1, evil).flush(1).cleanup(1, evil)
    path = tmp_path / "evil.log"
    path.write_text(log.text(), encoding="utf-8")
    out = tmp_path / "evil.html"
    proc = diagnose(path, "--html", str(out), "--session", evil)
    assert proc.returncode == ExitCode.OK, proc.stderr
    html = out.read_text(encoding="utf-8")
    assert html.count("<script") == 2 and "<img" not in html
    data = page(out)
    assert evil in data["lanes"]
    assert data["context"]["search"] == evil  # --session preselects the lane


def test_bad_html_uses_are_usage_errors(tmp_path: Path) -> None:
    log = tmp_path / "system.log"
    log.write_text(healthy_supersede().text(), encoding="utf-8")
    proc = diagnose(log, "--follow", "--html", str(tmp_path / "x.html"))
    assert proc.returncode == ExitCode.USAGE
    assert "--follow" in proc.stderr and "Traceback" not in proc.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = diagnose(log, "--html", str(blocker / "x.html"))
    assert proc.returncode == ExitCode.USAGE
    assert "cannot write --html" in proc.stderr and "Traceback" not in proc.stderr


def test_verify_hang_html_needs_the_log_of_a_url_and_a_writable_path(tmp_path: Path) -> None:
    """With --url, the server's log is the user's to give, and the page must be
    writable: both refused at once (exit 2), not after a whole run."""
    proc = cli.run("verify-hang", "--url", "http://127.0.0.1:9", "--html", str(tmp_path / "t.html"))
    assert proc.returncode == ExitCode.USAGE
    assert "--log-file" in proc.stderr and not (tmp_path / "t.html").exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = cli.run(
        "verify-hang", "--url", "http://127.0.0.1:9",
        "--log-file", str(tmp_path / "server.log"), "--html", str(blocker / "t.html"),
    )  # fmt: skip
    assert proc.returncode == ExitCode.USAGE
    assert "cannot write --html" in proc.stderr and "Traceback" not in proc.stderr


def test_a_timeline_that_cannot_be_drawn_never_costs_swarm_its_verdict(tmp_path: Path) -> None:
    """swarm draws its server's log next to locust's report; if the page cannot be
    written, the verdict is diagnose's all the same and the reason is said."""
    from jarvis_cli.swarm.target import diagnose_log

    log = tmp_path / "server.log"
    log.write_text(healthy_supersede().text(), encoding="utf-8")
    blocker = tmp_path / "file"
    blocker.write_text("")
    diagnosis = diagnose_log(log, blocker / "timeline.html")
    assert diagnosis.verdict == "healthy"
    assert isinstance(diagnosis.timeline, str) and diagnosis.timeline.startswith("no timeline")
    drawn = diagnose_log(log, tmp_path / "timeline.html")
    assert drawn.verdict == "healthy" and drawn.timeline == tmp_path / "timeline.html"


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_verify_hang_draws_the_embedded_servers_run(tmp_path: Path) -> None:
    """verify-hang --html against the embedded server with no-cancel: the run fails, and
    the page holds the run's streams with the overlap finding on them."""
    out = tmp_path / "run.html"
    # A --log-file that already holds an earlier run: the page draws this run only.
    server_log = tmp_path / "server.log"
    earlier = LogBuilder(start=1795000000.0).emit("server_start", version="0", pid=1)
    server_log.write_text(earlier.start(1, "earlier-run").flush(1).text(), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "jarvis_cli", "verify-hang", "--fault", "no-cancel",
         "--scenario", "overlap", "--log-file", str(server_log), "--html", str(out)],
        capture_output=True, text=True, timeout=80, check=False,
    )  # fmt: skip
    assert proc.returncode == ExitCode.FAILURE, proc.stdout + proc.stderr
    data = page(out)
    assert any(lane.endswith("-ov-0") for lane in data["lanes"])
    assert "earlier-run" not in data["lanes"]
    assert all(f["session"] != "earlier-run" for f in data["findings"])
    assert data["verdict"] == "unhealthy"
    overlap = [f for f in data["findings"] if f["id"] == "concurrent_streams"]
    assert overlap and all(len(f["bars"]) == 2 for f in overlap)


def test_a_fleets_split_brain_shows_which_process_ran_each_stream(tmp_path: Path) -> None:
    """Two workers' logs merged by time: the overlap finding's two streams are on one
    lane, and each bar names the process (its input, labelled by its server_start)."""
    fleet = Path(__file__).parent / "logs" / "fleet" / "split_brain_two_workers"
    out = tmp_path / "fleet.html"
    proc = diagnose(fleet / "system.w1.log", str(fleet / "system.w2.log"), "--html", str(out))
    assert proc.returncode == ExitCode.FAILURE, proc.stdout + proc.stderr
    data = page(out)
    (finding,) = [f for f in data["findings"] if f["id"] == "concurrent_streams"]
    first, second = (bars(data)[i] for i in finding["bars"])
    assert first["lane"] == second["lane"]
    processes = {data["inputs"][first["input"]], data["inputs"][second["input"]]}
    assert len(processes) == 2
    assert all("worker" in name for name in processes), processes


def test_lines_without_a_time_are_counted_not_drawn(tmp_path: Path) -> None:
    """Bare lines without a timestamp: nothing can be placed in time, and the
    page says so rather than drawing at zero."""
    from .logfixtures import BARE_SUPERSEDE_ANNOTATED

    data = drawn(BARE_SUPERSEDE_ANNOTATED, tmp_path)
    assert data["bars"]["lane"] == []
    assert any("no lifecycle line has a timestamp" in note for note in data["notes"])


def test_density_spreads_over_time_as_the_flushes_did(tmp_path: Path, engine: str) -> None:
    """A stream that flushes steadily for 20 s fills the density bins under its bar
    evenly: flushes are placed at their own block's time, not the chunk's."""
    log = LogBuilder().emit("server_start", version="0", pid=1, cancel_wait_ms=2000)
    log.start(1, "s1")
    for _ in range(2000):
        log.flush(1).at(0.01)
    log.cleanup(1, "s1")
    data = drawn(log.text(), tmp_path, engine)
    (bar,) = bars(data)
    width = data["density"]["bin_ms"]
    filled = set(data["density"]["bin"])
    under_bar = range(int(bar["start"] // width) + 1, int(bar["end"] // width))
    assert len(under_bar) > 100
    assert sum(1 for b in under_bar if b in filled) >= 0.9 * len(under_bar)
    counts = data["density"]["n"][1:-1]
    assert max(counts) <= 3 * min(counts), "flushes piled into a few bins"


def test_flushes_in_blocks_without_a_timed_first_line_still_count(tmp_path: Path) -> None:
    """Untimed lines (a traceback, a banner) between flushes: the flushes take the time
    of the next timed line of their block, and any that have none are said on the page."""
    log = LogBuilder().emit("server_start", version="0", pid=1, cancel_wait_ms=2000)
    log.start(1, "s1")
    lines = []
    for _ in range(3000):
        log.flush(1, scheduled=False)
    for line in log.lines:
        lines += ["Traceback (most recent call last):", line]
    text = "\n".join(lines) + "\n"
    data = drawn(text, tmp_path)
    assert sum(data["density"]["n"]) == text.count("event=flush_done")
    untimed = "\n".join(["banner"] * 5000 + ["event=flush_done request_id=r1 tokens_sent=1"]) + "\n"
    data = drawn(log.text() + untimed, tmp_path)
    assert sum(data["density"]["n"]) == log.text().count("event=flush_done")
    assert any("1 flush lines have no timestamp" in note for note in data["notes"])


def test_bars_follow_the_analyzers_matching_session_ends_and_restarts(tmp_path: Path) -> None:
    """A stream_end that names only its session ends that session's one open stream (as
    diagnose reads it); a restart ends what its process had open, drawn as such."""
    log = LogBuilder().emit("server_start", version="0", pid=1, cancel_wait_ms=2000)
    log.start(1, "s1").flush(1).emit("stream_end", session="s1", reason="completed")
    log.start(2, "s2").flush(2)
    log.at(1).emit("server_start", version="0", pid=2, cancel_wait_ms=2000)
    log.start(3, "s2").flush(3).cleanup(3, "s2")
    data = drawn(log.text(), tmp_path)
    by_trace = {bar["trace"]: bar for bar in bars(data)}
    assert by_trace["t1"]["reason"] == "completed" and by_trace["t1"]["end"] > 0
    assert by_trace["t2"]["reason"] == "restarted"
    assert by_trace["t2"]["end"] <= by_trace["t3"]["start"]  # no false overlap in s2
    (unended,) = [f for f in data["findings"] if f["id"] == "stream_not_ended"]
    assert [bars(data)[i]["trace"] for i in unended["bars"]] == ["t2"]


def test_a_page_over_its_byte_budget_gives_up_detail_and_says_so(tmp_path: Path) -> None:
    """Long ids can outweigh the item caps: the page is held to its budget, keeping the
    bars a finding names, and it says what it gave up."""
    from jarvis_cli.timeline.budget import fit, size_of

    log = LogBuilder().emit("server_start", version="0", pid=1, cancel_wait_ms=2000)
    for n in range(300):
        session = f"session-{n:04d}-" + "x" * 60
        log.start(n, session).flush(n).cancel(n, session).cleanup(n, session)
    log.start(999, "hung").flush(999).at(40).emit("loop_lag", lag_ms=1, max_lag_ms=1)
    data = drawn(log.text(), tmp_path)
    before = size_of(data)
    (hung,) = [f for f in data["findings"] if f["id"] == "stream_not_ended"]
    hung_trace = data["bars"]["trace"][hung["bars"][0]]
    fit(data, budget=before // 2)
    assert size_of(data) <= before // 2
    assert any(note.startswith("to stay within about") for note in data["notes"])
    (hung,) = [f for f in data["findings"] if f["id"] == "stream_not_ended"]
    assert [data["bars"]["trace"][i] for i in hung["bars"]] == [hung_trace]
    assert all(-1 <= i < len(data["bars"]["lane"]) for i in data["markers"]["bar"])


def test_a_log_path_that_is_no_utf8_does_not_change_the_exit_code(tmp_path: Path) -> None:
    log = Path(os.fsdecode(bytes(tmp_path) + b"/odd\xff.log"))
    log.write_text(healthy_supersede().text(), encoding="utf-8")
    out = tmp_path / "odd.html"
    assert diagnose(log, "--html", str(out)).returncode == ExitCode.OK
    assert page(out)["verdict"] == "healthy"
