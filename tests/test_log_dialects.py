"""Logs jarvis did not write: stdlib `logging`, loguru (plain and coloured), structlog
(JSON, key=value, console) and uvicorn access lines, read by diagnose and verify-hang
alike, every finding in every format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jarvis_cli.diagnose.report import Report, build_report
from jarvis_cli.diagnose.tree import Node, Status
from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.logs.dialects import parse_line, parse_time
from jarvis_cli.logs.engine import ENGINES
from jarvis_cli.logs.run import analyze
from jarvis_cli.verify import serverlog

from . import cli
from .logfixtures import FORMATS, SCENARIOS, LogBuilder

LOGS = Path(__file__).parent / "logs"
FIXTURES = sorted(LOGS.glob("*/*.log"))


def diagnose(path: Path, engine: str | None = None) -> Report:
    """What `jarvis diagnose` judges of one file (the same calls as the command)."""
    analyzer, sources = analyze([str(path)], engine=engine)
    try:
        report = build_report(analyzer)
        sources.resolve_findings(report.findings)
    finally:
        sources.close()
    return report


def node(report: Report, question: str) -> Node:
    pending = [report.tree]
    while pending:
        current = pending.pop()
        if current.question == question:
            return current
        pending += current.children
    raise AssertionError(question)


def test_every_scenario_is_written_in_every_format() -> None:
    """tests/logs holds each scenario in each format, each with its expected findings."""
    assert len(FIXTURES) == len(FORMATS) * len(SCENARIOS)
    for log in FIXTURES:
        assert (log.parent / f"{log.stem}.expected.json").is_file()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("log", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_finding_in_every_format(log: Path, engine: str) -> None:
    """Each fixture gives exactly its expected finding ids and exit code, and every
    lifecycle line of it is recognised (the access lines are not)."""
    expected = json.loads((log.parent / f"{log.stem}.expected.json").read_text())
    report = diagnose(log, engine)
    assert sorted({f.id.value for f in report.findings}) == expected["findings"]
    assert report.exit_code() == expected["exit"]
    lines = log.read_text(encoding="utf-8").splitlines()
    access = sum(1 for line in lines if "POST /v1/chat/completions" in line)
    assert report.analyzer.coverage.recognised == len(lines) - access


@pytest.mark.e2e
def test_fixtures_are_what_the_real_libraries_write_today(tmp_path: Path) -> None:
    """Regenerating the fixtures with the installed logging, loguru, structlog and uvicorn
    gives the same bytes: the files are theirs, not hand-made imitations."""
    code = (
        "import sys; from pathlib import Path; from loguru import logger; logger.remove(); "
        "from tests.logfixtures import write_dialect_fixtures; "
        "write_dialect_fixtures(Path(sys.argv[1]))"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=Path(__file__).parent.parent, check=True, timeout=60,
    )  # fmt: skip
    for log in FIXTURES:
        fresh = tmp_path / log.parent.name / log.name
        assert fresh.read_bytes() == log.read_bytes(), log


@pytest.mark.parametrize("fmt", ["stdlib", "stdlib_dashed", "loguru", "structlog_json"])
def test_two_streams_side_by_side_without_flush_lines_are_concurrent(fmt: str) -> None:
    """A FastAPI app logging only stream_start/stream_end (session in stream_start): two
    streams of a session ran for 2 s side by side. concurrent_streams, "One stream per
    session?" judged, durations from the timestamps (no duration_ms in the log)."""
    report = diagnose(LOGS / fmt / "side_by_side.log")
    (finding,) = report.findings
    assert finding.id.value == "concurrent_streams"
    assert finding.session == "s1"
    assert "never cancelled" in finding.message
    assert node(report, "One stream per session?").status is Status.FAIL
    durations = report.analyzer.stats.durations_ms
    assert durations.count == 2
    assert 1950 <= durations.quantile(0.5) <= 2050


def test_a_minimal_supersede_is_healthy() -> None:
    """A supersede with the fewest fields: healthy, and the cleanup question is
    not applicable (no stream_end carries cleanup_done) with a note saying what to log."""
    report = diagnose(LOGS / "stdlib" / "minimal_supersede.log")
    assert report.verdict == "healthy"
    assert report.findings == []
    cleanup = node(report, "stream_end has cleanup_done=True and buffers cleaned?")
    assert cleanup.status is Status.NOT_APPLICABLE
    assert "log cleanup_done=True in stream_end" in cleanup.unjudged
    assert cleanup.to_json()["not_applicable"] == cleanup.unjudged


def test_missing_cleanup_done_is_an_error_only_where_other_streams_record_it() -> None:
    """The same stream_end without cleanup_done: alone, not judged; beside streams that
    log cleanup_done=True, cleanup_incomplete naming that stream."""
    report = diagnose(LOGS / "loguru" / "cleanup_missing.log")
    (finding,) = report.findings
    assert finding.id.value == "cleanup_incomplete"
    assert finding.trace == "t3"
    assert "cleanup_done=True" in finding.message


def test_flush_lines_link_to_their_stream_by_trace() -> None:
    """Bare flush lines carry request_id = trace: B's flush_done is the proof."""
    report = diagnose(LOGS / "stdlib" / "interleaved_flushes.log")
    (finding,) = report.findings
    assert finding.id.value == "concurrent_streams"
    assert any("flush_done request_id=B" in e.text for e in finding.evidence)


def test_a_cancelled_stream_that_keeps_flushing_is_cancel_ignored() -> None:
    """Linked by trace, the five flushes after stream_cancelled are counted."""
    report = diagnose(LOGS / "structlog_json" / "cancel_ignored.log")
    assert [f.id.value for f in report.findings] == ["cancel_ignored"]
    assert "5 more flushes" in report.findings[0].message


def test_a_late_supersede_is_concurrent_a_prompt_one_is_healthy(tmp_path: Path) -> None:
    """Cancelled A ending 0.3 s after B started is the supersede; 3 s after (past the
    default 2 s wait), A ran beside B: concurrent_streams."""
    for delay, expected in ((0.3, []), (3.0, ["concurrent_streams"])):
        log = LogBuilder().emit("stream_start", trace="a", session="s")
        log.emit("stream_start", trace="b", session="s").emit("stream_cancelled", trace="a")
        log.at(delay).emit("stream_end", trace="a").emit("stream_end", trace="b")
        path = tmp_path / f"{delay}.log"
        path.write_text(log.text())
        assert [f.id.value for f in diagnose(path).findings] == expected


def test_remedies_speak_of_the_users_code_unless_jarvis_wrote_the_log(tmp_path: Path) -> None:
    """A stdlib log: "cancel the previous stream of the session before registering the new
    one". A jarvis log (server_start): the remedy names jarvis's own fix."""
    foreign = diagnose(LOGS / "stdlib" / "side_by_side.log").findings[0]
    assert "Cancel the previous stream of the session before registering the new one" in (
        foreign.remedy
    )
    assert foreign.to_json()["remedy"] == foreign.remedy
    jarvis = LogBuilder().emit("server_start", version="0", cancel_wait_ms=2000)
    jarvis.start(1, "s").start(2, "s").flush(2).flush(1).cleanup(1, "s").cleanup(2, "s")
    path = tmp_path / "system.log"
    path.write_text(jarvis.text())
    own = diagnose(path).findings[0]
    assert own.id.value == "concurrent_streams"
    assert "Register a new prompt only after cancelling the old stream" in own.remedy


@pytest.mark.parametrize(
    ("fmt", "scenario", "code"),
    [
        ("loguru_colour", "side_by_side", ExitCode.FAILURE),
        ("structlog_console", "minimal_supersede", ExitCode.OK),
        ("stdlib_dashed", "no_batching", ExitCode.OK),
    ],
)
def test_the_command_exits_by_the_verdict_on_any_dialect(
    fmt: str, scenario: str, code: ExitCode
) -> None:
    """`jarvis diagnose` itself, on coloured and plain files: exit codes and JSON."""
    proc = cli.run("diagnose", str(LOGS / fmt / f"{scenario}.log"), "--json")
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["coverage"]["lifecycle_events"] > 0


# -- the line reader ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "dialect"),
    [
        ("2026-11-30 05:33:35,123 INFO jarvis.server: stream_start trace=abc123 session=test-1",
         "stdlib"),
        ("2026-11-30 05:33:35,123 - jarvis.server - INFO - stream_start trace=abc123 "
         "session=test-1", "stdlib"),
        ("INFO:jarvis.server:stream_start trace=abc123 session=test-1", "stdlib"),
        ("2026-11-30 05:33:35.123 | INFO     | app.server:chat:42 - stream_start trace=abc123 "
         "session=test-1", "loguru"),
        ("\x1b[32m2026-11-30 05:33:35.123\x1b[0m | \x1b[1mINFO    \x1b[0m | \x1b[36mapp.server"
         "\x1b[0m:\x1b[36mchat\x1b[0m:\x1b[36m42\x1b[0m - \x1b[1mstream_start trace=abc123 "
         "session=test-1\x1b[0m", "loguru"),
        ('{"event": "stream_start", "trace": "abc123", "session": "test-1", '
         '"timestamp": "2026-11-30T05:33:35.123000Z", "level": "info"}', "json"),
        ('{"event": "stream_start trace=abc123 session=test-1", "level": "info"}', "json"),
        ("timestamp='2026-11-30T05:33:35.123000Z' level='info' event='stream_start' "
         "trace='abc123' session='test-1'", "logfmt"),
        ("ts=2026-11-30T05:33:35.123000Z level=info event=stream_start trace=abc123 "
         "session=test-1", "logfmt"),
        ("stream_start trace=abc123 session=test-1  ← NEW REQUEST", "plain"),
    ],
)  # fmt: skip
def test_one_event_read_alike_in_every_dialect(line: str, dialect: str) -> None:
    """The same stream_start in each dialect: same event, trace and session."""
    record = parse_line(line)
    assert record is not None
    assert record.dialect == dialect
    assert record.event == "stream_start"
    assert (record.fields["trace"], record.fields["session"]) == ("abc123", "test-1")


def test_timestamps_of_every_dialect_agree() -> None:
    """UTC stamps with ',' or '.', 'T' or ' ', 'Z' or +00:00 read to the same second;
    a naive stamp is local time, as logging and loguru write it."""
    utc = [
        "2026-11-30T05:33:35.123456Z", "2026-11-30 05:33:35.123456+00:00",
        "2026-11-30T05:33:35,123456+0000",
    ]  # fmt: skip
    assert {parse_time(s) for s in utc} == {1796016815.123456}
    naive = parse_time("2026-11-30 05:33:35,123")
    assert naive is not None and parse_time("2026-11-30 05:33:37,123") == naive + 2


def test_access_lines_and_prose_are_whole_lines_without_events() -> None:
    """uvicorn's access line (coloured or not) is a log line with no event: never a
    finding, never an error; prose after a head has no event either."""
    for line in (
        'INFO:     127.0.0.1:5555 - "POST /v1/chat/completions HTTP/1.1" 200 OK',
        '\x1b[32mINFO\x1b[0m:     127.0.0.1:5555 - "\x1b[1mPOST / HTTP/1.1\x1b[0m" 200',
        "2026-11-30 05:33:35,123 INFO uvicorn.error: Started server process [42]",
    ):
        record = parse_line(line)
        assert record is not None
        assert record.event is None


def test_fragments_and_forged_control_sequences_are_no_events() -> None:
    """A line split by an unescaped value, or one starting with a terminal control
    sequence other than a colour, is not a whole log event in any dialect."""
    for line in (
        'x" session=forged trace=t',
        "session=forged trace=t",
        "\x1b[2Kts=0 level=info event=stream_end session=forged cleanup_done=True",
        "Traceback (most recent call last):",
    ):
        assert parse_line(line) is None, line
        assert not serverlog.parse(line).parseable


# -- verify-hang's reading of the same logs ------------------------------------------


def test_serverlog_reads_a_stdlib_log_as_parseable_events(tmp_path: Path) -> None:
    """verify-hang reads a user's stdlib log with the same reader: every line parseable,
    the access line included, and stream_start's fields come back."""
    path = LOGS / "stdlib" / "side_by_side.log"
    lines = [serverlog.parse(t) for t in serverlog.lines_since(path, 0)]
    assert all(line.parseable for line in lines)
    assert [line.event for line in lines][:2] == ["stream_start", None]
    assert serverlog.session_starts(path, 0, "s1") == [
        lines[0].fields,
        lines[2].fields,
    ]
    assert lines[0].fields["trace"] == "a1"


def test_session_ended_links_stream_end_by_trace_without_cleanup_done(tmp_path: Path) -> None:
    """stream_end names only the trace (the session is in stream_start) and carries no
    cleanup_done: the session's stream has ended. A mark after its start: not ours."""
    path = tmp_path / "app.log"
    path.write_text(
        "2026-11-30 05:33:35,000 INFO app: stream_start trace=a1 session=s1\n"
        "2026-11-30 05:33:35,500 INFO app: stream_start trace=z9 session=other\n"
    )
    assert not serverlog.session_ended(path, 0, "s1")
    with path.open("a") as handle:
        handle.write("2026-11-30 05:33:36,000 INFO app: stream_end trace=z9\n")
    assert not serverlog.session_ended(path, 0, "s1")
    with path.open("a") as handle:
        handle.write("2026-11-30 05:33:37,000 INFO app: stream_end trace=a1 duration_ms=2\n")
    assert serverlog.session_ended(path, 0, "s1")
    mark = len(path.read_bytes().split(b"\n", 1)[0]) + 1
    assert not serverlog.session_ended(path, mark, "s1")


def test_session_ended_by_session_field_or_request_id(tmp_path: Path) -> None:
    """Other links: a stream_end that names its session and no id; a request_id."""
    path = tmp_path / "app.log"
    path.write_text(
        '{"event": "stream_start", "session": "s1"}\n{"event": "stream_end", "session": "s1"}\n'
    )
    assert serverlog.session_ended(path, 0, "s1")
    path.write_text(
        "INFO:app:stream_start request_id=r7 session=s2\nINFO:app:stream_end request_id=r7\n"
    )
    assert serverlog.session_ended(path, 0, "s2")
    assert serverlog.session_starts(path, 0, "s2")[0]["request_id"] == "r7"


def test_serverlog_splits_lines_at_lf_only(tmp_path: Path) -> None:
    """A logged value holding U+2028 or a form feed stays one line (str.splitlines would
    make two and judge a split line that is not there); CRLF ends are trimmed, and an
    unfinished last line waits for its LF."""
    log = tmp_path / "server.log"
    log.write_bytes(
        "stream_start trace=a session=x\u2028y\x0cz\r\nstream_end trace=a\npart".encode()
    )
    assert serverlog.lines_since(log, 0) == [
        "stream_start trace=a session=x\u2028y\x0cz",
        "stream_end trace=a",
    ]


def test_serverlog_lines_since_a_mark_inside_a_line_start_at_the_next_one(tmp_path: Path) -> None:
    """A mark taken while the server was writing a line falls inside it: the tail of that
    line is not returned as a line (it would read as a split, unparseable one), and a
    mark at a line's first byte keeps that line."""
    log = tmp_path / "server.log"
    first = b"ts=2026-11-30T00:00:00.014456Z level=info event=flush_on_end request_id=r size=30\n"
    second = b"ts=2026-11-30T00:00:00.020000Z level=info event=flush_done request_id=r\n"
    log.write_bytes(first + second + b"ts=2026-11-30T00:00")
    assert serverlog.lines_since(log, 20) == [second.decode().rstrip("\n")]
    assert serverlog.lines_since(log, len(first)) == [second.decode().rstrip("\n")]
    assert serverlog.lines_since(log, 0) == [
        first.decode().rstrip("\n"),
        second.decode().rstrip("\n"),
    ]
    assert serverlog.lines_since(log, len(first) + len(second)) == []


@pytest.mark.parametrize(
    ("line", "stamp"),
    [
        ("[2026-11-30 05:33:35,000] INFO jarvis.stream - event=stream_end trace=t1 session=s1 "
         "cleanup_done=True", "2026-11-30 05:33:35,000"),
        ("[2026-11-30 05:33:35 +0000] [42] [INFO] event=stream_end trace=t1 session=s1 "
         "cleanup_done=True", "2026-11-30T05:33:35+00:00"),
        ("INFO 2026-11-30 05:33:35,000 _stdlog 42 7 event=stream_end trace=t1 session=s1 "
         "cleanup_done=True", "2026-11-30 05:33:35,000"),
        ("Nov 30 05:33:35 host app[42]: ts=2026-11-30T05:33:35.000000Z level=info "
         "event=stream_end trace=t1 session=s1 cleanup_done=True", "2026-11-30T05:33:35Z"),
        ('{"event": "event=stream_end trace=t1 session=s1 cleanup_done=True", '
         '"timestamp": "2026-11-30T05:33:35Z"}', "2026-11-30T05:33:35Z"),
        ('{"@timestamp": "2026-11-30T05:33:35.000Z", "log.level": "info", "message": '
         '"event=stream_end trace=t1 session=s1 cleanup_done=True"}', "2026-11-30T05:33:35Z"),
    ],
)  # fmt: skip
def test_event_pairs_are_read_after_any_prefix_and_inside_a_json_message(
    line: str, stamp: str
) -> None:
    """jarvis's records (`event=NAME k=v`) under any formatter: the event is NAME, not the
    logger's name before it, cleanup_done is True (not `True",`), and the time is the
    prefix's stamp (or the record's own ts=)."""
    record = parse_line(line)
    assert record is not None
    assert record.event == "stream_end"
    assert (record.fields["trace"], record.fields["cleanup_done"]) == ("t1", "True")
    assert record.ts == parse_time(stamp)
    assert serverlog.parse(line).event == "stream_end"


def test_a_json_line_with_a_logfmt_message_goes_to_the_line_reader(tmp_path: Path) -> None:
    """structlog's JSON over the stdlib bridge (`{"event": "event=stream_end … cleanup_done=
    True"}`): diagnose reads the inner logfmt, so a healthy run is healthy, with no
    cleanup_incomplete that blames the user's `finally`."""
    path = tmp_path / "app.log"
    lines = []
    for n in range(3):
        for event, extra in (
            ("stream_start", f"session=s{n}"),
            ("stream_end", "cleanup_done=True"),
        ):
            message = f"event={event} trace=t{n} {extra}"
            lines.append(json.dumps({"event": message, "level": "info",
                                     "timestamp": f"2026-11-30T05:33:3{n}Z"}))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    for engine in ENGINES:
        report = diagnose(path, engine)
        assert report.findings == []
        assert report.verdict == "healthy"
        assert report.analyzer.stats.cleanup_recorded == 3
