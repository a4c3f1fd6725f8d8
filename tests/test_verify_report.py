"""verify-hang's verdicts: checks to statuses, the plan's validation, the report and its
renderings (table, JSON, JUnit), and the log judgement of hostile input."""

from __future__ import annotations

import asyncio
import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from jarvis.exceptions import ConfigError
from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.verify.plan import SCENARIOS, Plan
from jarvis_cli.verify.report import SCHEMA, Report, render, write_junit
from jarvis_cli.verify.results import Checks, ScenarioResult, Status
from jarvis_cli.verify.runner import RunResult
from jarvis_cli.verify.scenarios.hostile_input import FORGED_MODEL, _judge_log
from jarvis_cli.verify.target import Target, normalise_url


def test_a_scenario_whose_every_check_was_skipped_is_skip_never_pass() -> None:
    """Nothing checked, something skipped: SKIP with the reason as summary."""
    checks = Checks("leaks")
    checks.skip("/v1/streams: not offered")
    result = checks.result("all good", {})
    assert result.status is Status.SKIP
    assert result.summary == "/v1/streams: not offered"


def test_a_passing_scenario_says_how_many_checks_it_skipped() -> None:
    """Checked and passed, one check skipped: PASS, and the summary owns up to the skip."""
    checks = Checks("overlap")
    checks.expect(True, "never shown")
    checks.skip("exact text: not the synthetic model")
    result = checks.result("16 overlaps", {})
    assert result.status is Status.PASS
    assert result.summary == "16 overlaps (1 check(s) skipped)"
    assert result.evidence == ["skipped: exact text: not the synthetic model"]


def test_failures_lead_the_evidence_and_a_hang_says_so() -> None:
    """A hang and a plain failure: FAIL, hung, summary names the hang, failures first."""
    checks = Checks("overlap")
    checks.fail("B: text differs")
    checks.expect(False, "A: no complete response within the deadline", hang=True)
    checks.note("stopped after round 1")
    result = checks.result("", {})
    assert result.status is Status.FAIL
    assert result.hung
    assert result.summary.startswith(
        "hang: 1 request(s) got no byte for the idle bound while the server sent nothing on "
        "any stream; A: no complete"
    )
    assert result.evidence[:2] == ["B: text differs", "A: no complete response within the deadline"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sessions": 0}, "--sessions"),
        ({"rounds": 0}, "--rounds"),
        ({"deadline": 0}, "--deadline"),
        ({"overlap_s": 6.0, "deadline": 5.0}, "--overlap-ms"),
        ({"cancel_wait": 0}, "--cancel-wait"),
    ],
)
def test_a_plan_that_cannot_work_is_a_config_error(kwargs: dict[str, float], message: str) -> None:
    """Each impossible setting is refused up front, naming its flag."""
    with pytest.raises(ConfigError, match=message):
        Plan(**kwargs)  # type: ignore[arg-type]


def test_scenario_selection_keeps_the_run_order_and_refuses_unknown_names() -> None:
    """--scenario leaks --scenario overlap runs overlap first; a typo is a usage error."""
    assert Plan.select(["leaks", "overlap"]) == ("overlap", "leaks")
    assert Plan.select(None) == SCENARIOS
    with pytest.raises(ConfigError, match="unknown --scenario 'overlaps'"):
        Plan.select(["overlaps"])


def test_urls_with_and_without_v1_name_the_same_server() -> None:
    """An OpenAI base URL (…/v1/) and a bare one are the same target."""
    assert normalise_url("http://h:8000/v1/") == "http://h:8000"
    assert normalise_url("http://h:8000") == "http://h:8000"


def report_of(*results: ScenarioResult, hung_during: str | None = None) -> Report:
    target = Target(
        "http://127.0.0.1:1", "jarvis-synthetic", True, True, True, "/healthz", None, True
    )
    run = RunResult(target, list(results), started_wall=1_700_000_000.0, seconds=2.5)
    run.hung_during = hung_during
    run.stacks = ["stacks: py-spy is not installed"] if hung_during else []
    return Report(Plan(), run)


PASSED = ScenarioResult("baseline", Status.PASS, "completed", {"ttft_ms": 9.0})
FAILED = ScenarioResult("overlap", Status.FAIL, "A late", {}, ["A late", "  detail"], hung=True)
SKIPPED = ScenarioResult("leaks", Status.SKIP, "no log")


def test_exit_codes_follow_the_verdicts() -> None:
    """Any failure: 1. Passes and skips: 0. Only skips (nothing checked): 3."""
    assert report_of(PASSED, FAILED).exit_code() is ExitCode.FAILURE
    assert report_of(PASSED, SKIPPED).exit_code() is ExitCode.OK
    assert report_of(SKIPPED).exit_code() is ExitCode.UNAVAILABLE


def test_json_report_is_versioned_and_carries_each_scenario() -> None:
    """Schema id, passed, verdict, the hang with its stacks, one entry per scenario."""
    document = report_of(PASSED, FAILED, SKIPPED, hung_during="overlap").to_json()
    assert document["schema"] == SCHEMA == "jarvis.verify-hang/1"
    assert document["passed"] is False
    assert document["verdict"] == "hang"
    assert document["hang"] == {
        "during": "overlap",
        "silent_s": None,
        "stacks": ["stacks: py-spy is not installed"],
    }
    assert document["started_at"] == "2023-11-14T22:13:20Z"
    scenarios = document["scenarios"]
    assert [s["name"] for s in scenarios] == ["baseline", "overlap", "leaks"]  # type: ignore[index]
    assert set(scenarios[1]) == {  # type: ignore[index]
        "name", "status", "summary", "hung", "seconds", "metrics", "evidence",
    }  # fmt: skip


def test_junit_has_one_testcase_per_scenario_with_failures_and_skips(tmp_path: Path) -> None:
    """A failure carries its evidence and type=hang; a skip its reason."""
    path = tmp_path / "out" / "verify.xml"
    write_junit(report_of(PASSED, FAILED, SKIPPED), path)
    suite = ET.parse(path).getroot()
    assert suite.get("tests") == "3"
    assert suite.get("failures") == "1"
    assert suite.get("skipped") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failure = cases["overlap"].find("failure")
    assert failure is not None
    assert failure.get("type") == "hang"
    assert failure.text == "A late\n  detail"
    skipped = cases["leaks"].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "no log"


def test_the_table_shows_every_scenario_the_evidence_and_the_stacks() -> None:
    """The human report names each scenario, shows a failure's evidence and the hang."""
    buffer = io.StringIO()
    render(report_of(PASSED, FAILED, hung_during="overlap"), Console(file=buffer, width=120))
    text = buffer.getvalue()
    assert "baseline" in text
    assert "HANG" in text
    assert "  detail" in text
    assert "the server hung during overlap; where it was stuck:" in text
    assert "py-spy is not installed" in text


def judge_hostile_log(tmp_path: Path, text: str, *, strict: bool = True) -> ScenarioResult:
    log = tmp_path / "server.log"
    log.write_text(text, encoding="utf-8")
    checks = Checks("hostile_input")
    asyncio.run(_judge_log(checks, strict, log, 0, []))
    return checks.result("ok", {})


def test_hostile_input_passes_a_log_that_escaped_the_forged_model(tmp_path: Path) -> None:
    """jarvis's escaping: the forged model is one quoted value of its own stream_start."""
    from jarvis.logfmt import format_logfmt

    line = format_logfmt(
        "2026-01-01T00:00:00.000000Z", "info", "stream_start",
        {"trace": "t", "session": "vh-1-forged-model", "stream_id": "c", "model": FORGED_MODEL,
         "prompt_chars": 1},
    )  # fmt: skip
    assert judge_hostile_log(tmp_path, line + "\n").status is Status.PASS


@pytest.mark.parametrize("strict", [True, False])
def test_hostile_input_fails_a_log_that_wrote_the_forged_model_raw(
    tmp_path: Path, strict: bool
) -> None:
    """A server that logs the model unescaped splits the line and forges an event: caught,
    under jarvis's contract and without it (the split line is no event of any format)."""
    raw = (
        "ts=2026-01-01T00:00:00.000000Z level=info event=stream_start trace=t "
        f"session=vh-1-forged-model stream_id=c model={FORGED_MODEL} prompt_chars=1\n"
    )
    result = judge_hostile_log(tmp_path, raw, strict=strict)
    assert result.status is Status.FAIL
    assert any("not one parseable event" in e or "forged" in e for e in result.evidence)
