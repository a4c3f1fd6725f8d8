"""`jarvis swarm`'s gate: locust's CSV reports read back into figures and judged, on small
fixture files (no locust run), and the request names agree with the locustfile's."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from jarvis_cli.swarm import thresholds
from jarvis_cli.swarm.thresholds import Figures, ReportMissing, Thresholds, judge

HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)
STATS = f"""{HEADER}
POST,/v1/chat/completions,200,0,2,2.6,1.0,13.5,0.0,9.7,0.0,2,2,2,2,8,12,13,14,14,14,14
SSE,interrupt-ttft,40,0,48,60,46,120,0.0,2.1,0.0,48,87,87,87,87,90,110,120,120,120,120
SSE,stream,200,3,350,716,46,2019,2395,8.8,0.1,350,770,950,2000,2000,2000,2000,2000,2000,2000,2000
SSE,ttft,197,0,87,80,46,130,0.0,8.8,0.0,87,87,88,88,92,100,100,110,130,130,130
,Aggregated,637,3,63,293,1.0,2019,894,41,0.1,63,87,89,340,950,2000,2000,2000,2000,2000,2000
"""
FAILURES = """Method,Name,Error,Occurrences
SSE,stream,"StaleChunk(""a superseded stream's chunk after its successor's first"")",2
SSE,stream,"Hang('no byte within 5 s')",1
POST,/v1/chat/completions,"ConnectionRefusedError(111, 'Connection refused')",4
"""
LIMITS = Thresholds(
    max_p99_ttft_ms=500, max_p99_interrupt_ms=1000, max_fail_ratio=0.02, max_p99_resume_ms=100
)


def write(tmp_path: Path, stats: str = STATS, failures: str | None = FAILURES) -> Path:
    prefix = tmp_path / "locust"
    (tmp_path / "locust_stats.csv").write_text(stats, encoding="utf-8")
    if failures is not None:
        (tmp_path / "locust_failures.csv").write_text(failures, encoding="utf-8")
    return prefix


def test_stats_rows_and_percentiles_are_read_by_type_and_name(tmp_path: Path) -> None:
    """The stream row gives streams and failures; percentile columns read as numbers."""
    figures = Figures.load(write(tmp_path))
    assert (figures.streams, figures.stream_failures) == (200, 3)
    assert figures.fail_ratio == pytest.approx(0.015)
    ttft = figures.sse("ttft")
    assert ttft is not None
    assert (ttft.pct("50%"), ttft.pct("99%"), ttft.max) == (87, 110, 130)
    assert figures.requests == 200  # the chat POSTs; SSE metrics and the total are not requests


def test_failures_are_counted_by_the_locustfile_kind_and_add_up(tmp_path: Path) -> None:
    """Stream failures group by exception class and add up to the stream row's failure
    count; failed HTTP requests (each also a stream's HTTPError) are counted apart."""
    figures = Figures.load(write(tmp_path))
    assert figures.failures == {"StaleChunk": 2, "Hang": 1}
    assert sum(figures.failures.values()) == figures.stream_failures
    assert figures.request_failures == 4


def test_a_failed_model_probe_is_no_stream_failure(tmp_path: Path) -> None:
    """A GET /v1/models that failed (a server without a model list) is not among the
    failures by kind: the probe is not a stream."""
    failures = 'Method,Name,Error,Occurrences\nGET,/v1/models,"HTTPError(404)",1\n'
    stats = STATS.replace("SSE,stream,200,3,", "SSE,stream,200,0,")
    figures = Figures.load(write(tmp_path, stats, failures))
    assert figures.failures == {}
    assert figures.stream_failures == 0


def test_stream_failures_missing_from_the_csv_show_as_other(tmp_path: Path) -> None:
    """Should the failures CSV lack a row the stats count, the shortfall is `other`: the
    kinds always add up to the header's count."""
    figures = Figures.load(write(tmp_path, failures="Method,Name,Error,Occurrences\n"))
    assert figures.failures == {"other": 3}


def test_the_text_check_is_read_from_its_own_entry(tmp_path: Path) -> None:
    """`text-checked` counts streams whose text was checked; without it the check was off."""
    assert Figures.load(write(tmp_path)).text_checked == 0
    row = "SSE,text-checked,150,0,0,0,0,0,0.0,1.0,0.0,0,0,0,0,0,0,0,0,0,0,0\n"
    assert Figures.load(write(tmp_path, STATS + row)).text_checked == 150


def test_every_threshold_holds_for_a_healthy_run(tmp_path: Path) -> None:
    """Within every limit: each check held, and each names the flag that sets it."""
    checks = judge(Figures.load(write(tmp_path)), LIMITS)
    assert [c.name for c in checks] == [
        "streams", "--max-fail-ratio", "--max-p99-ttft-ms", "--max-p99-interrupt-ms",
    ]  # fmt: skip
    assert all(c.held for c in checks)


def test_each_crossed_threshold_is_named(tmp_path: Path) -> None:
    """Tighter limits: exactly the crossed checks fail, with the measured value shown."""
    tight = Thresholds(
        max_p99_ttft_ms=100, max_p99_interrupt_ms=1000, max_fail_ratio=0.01, max_p99_resume_ms=100
    )
    checks = {c.name: c for c in judge(Figures.load(write(tmp_path)), tight)}
    assert not checks["--max-p99-ttft-ms"].held
    assert checks["--max-p99-ttft-ms"].value == "110 ms"
    assert not checks["--max-fail-ratio"].held
    assert "3 of 200 streams" in checks["--max-fail-ratio"].value
    assert checks["--max-p99-interrupt-ms"].held


def test_a_run_that_read_no_stream_never_passes(tmp_path: Path) -> None:
    """Only the header (the server answered nothing): streams, fail ratio and TTFT all fail,
    and the interrupt check is absent rather than passed."""
    checks = judge(Figures.load(write(tmp_path, HEADER + "\n", None)), LIMITS)
    assert {c.name: c.held for c in checks} == {
        "streams": False, "--max-fail-ratio": False, "--max-p99-ttft-ms": False,
    }  # fmt: skip
    assert math.isnan(Figures.load(tmp_path / "locust").fail_ratio)


#: Reloads: 10 resumes, 2 of them failed (a gap, a server that would not resume).
RESUME_ROW = "SSE,resume,10,2,80,82,3,95,0.0,1.0,0.2,80,80,81,81,82,90,95,95,95,95,95\n"
RESUME_FAILURES = FAILURES + (
    "SSE,resume,\"ResumeGap('a gap or a duplicate in the event ids across a reload')\",1\n"
    "SSE,resume,\"NoResume('the server does not resume (HTTP 404 at /v1/streams/{id})')\",1\n"
    'GET,/v1/streams/{id},"LocustBadStatusCode(code=404)",1\n'
)


def test_resume_failures_are_counted_by_kind_apart_from_streams(tmp_path: Path) -> None:
    """A resume's failures are kinds of their own entry: the stream kinds are unchanged,
    the resume kinds add up to the resume row's failures, and the refused GET is a failed
    request, not a third failure."""
    figures = Figures.load(write(tmp_path, STATS + RESUME_ROW, RESUME_FAILURES))
    assert figures.failures == {"StaleChunk": 2, "Hang": 1}
    assert figures.resume_kinds == {"ResumeGap": 1, "NoResume": 1}
    assert (figures.resumes, figures.resume_failures) == (10, 2)
    assert figures.request_failures == 5


def test_failed_resumes_count_in_the_fail_ratio(tmp_path: Path) -> None:
    """Failed reads over reads: (3 stream + 2 resume failures) / (200 streams + 10
    resumes), and the check says so; without reloads the ratio is the streams' alone."""
    figures = Figures.load(write(tmp_path, STATS + RESUME_ROW, RESUME_FAILURES))
    assert figures.fail_ratio == pytest.approx(5 / 210)
    checks = {c.name: c for c in judge(figures, LIMITS)}
    assert not checks["--max-fail-ratio"].held  # 2.38% > 2%: the resumes tipped it
    assert checks["--max-fail-ratio"].value == "2.38% (5 of 200 streams and 10 resumes)"
    assert Figures.load(write(tmp_path)).fail_ratio == pytest.approx(3 / 200)


def test_the_resume_p99_is_judged_only_when_users_reloaded(tmp_path: Path) -> None:
    """With a `resume` entry its p99 (95 ms) is checked against --max-p99-resume-ms,
    held at 100 and crossed at 0.5 (shown as such, not rounded to 0); without one there
    is no such check, rather than one passed."""
    figures = Figures.load(write(tmp_path, STATS + RESUME_ROW))
    held = {c.name: c for c in judge(figures, LIMITS)}["--max-p99-resume-ms"]
    assert (held.held, held.limit, held.value) == (True, "100 ms", "95 ms")
    tight = Thresholds(
        max_p99_ttft_ms=500, max_p99_interrupt_ms=1000, max_fail_ratio=1, max_p99_resume_ms=0.5
    )
    crossed = {c.name: c for c in judge(figures, tight)}["--max-p99-resume-ms"]
    assert (crossed.held, crossed.limit) == (False, "0.5 ms")
    names = [c.name for c in judge(Figures.load(write(tmp_path)), LIMITS)]
    assert "--max-p99-resume-ms" not in names


def test_a_missing_stats_file_is_reported_not_judged(tmp_path: Path) -> None:
    """No `_stats.csv` (locust crashed): ReportMissing, never an empty pass."""
    with pytest.raises(ReportMissing, match=r"locust_stats\.csv"):
        Figures.load(tmp_path / "locust")


def test_request_names_and_kinds_agree_with_the_locustfile() -> None:
    """The gate reads the names the locustfile fires (read as text: locust is not imported)."""
    source = (Path(__file__).parents[1] / "loadtests" / "locustfile.py").read_text()
    names = (
        "SSE",
        "STREAM",
        "TTFT",
        "CHUNK_GAP",
        "ITL",
        "ITL_ESTIMATED",
        "TOKENS_REPORTED",
        "TOKENS_ESTIMATED",
        "FULL_STREAM",
        "INTERRUPT_TTFT",
        "TEXT_CHECKED",
        "RESUME",
    )
    for constant in names:
        match = re.search(rf'^{constant} = "([^"]+)"', source, re.M)
        assert match is not None, constant
        assert match.group(1) == getattr(thresholds, constant)
    for kind in thresholds.KINDS:
        assert re.search(rf"^class {kind}\(StreamFailure\):", source, re.M), kind
