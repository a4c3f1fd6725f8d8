"""`jarvis verify-hang` against servers that are not jarvis (tests/peers): each verdict
rests on what the server does on the wire, whatever framework, API or framing it uses.

Every run is the real command in a subprocess with a hard timeout, against a peer
started on a free loopback port and killed (process group) when the test ends.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .peers import PEERS, ROOT, USAGE, Expectation, Peer, fill, running

RUN_TIMEOUT_S = 90.0  # slow_finally waits its 2 s cancel wait in several scenarios
DOC = ROOT / "docs" / "verify-hang.md"
DOC_SECTION = "## Servers that are not jarvis"
EXIT_CODES = {"pass": 0, "fail": 1, USAGE: 2}


@dataclass
class Verdict:
    """One finished `verify-hang --url` run: exit code and JSON report."""

    code: int
    report: dict[str, Any]
    stderr: str

    @property
    def failing(self) -> frozenset[str]:
        return frozenset(s["name"] for s in self.report["scenarios"] if s["status"] == "fail")

    def evidence(self, name: str) -> list[str]:
        return next(s["evidence"] for s in self.report["scenarios"] if s["name"] == name)

    def explain(self) -> str:
        lines = [f"exit {self.code}, verdict {self.report.get('verdict')}"]
        for s in self.report.get("scenarios", []):
            lines.append(f"  {s['name']}: {s['status']}: {s['summary']}")
            lines += [f"      {e}" for e in s.get("evidence", [])[:3]]
        return "\n".join(lines) + (f"\nstderr: {self.stderr[-800:]}" if self.stderr else "")


def verify_hang(url: str, args: list[str], workdir: Path) -> Verdict:
    """Run `jarvis verify-hang --url URL <args> --json ...` to the end, within RUN_TIMEOUT_S."""
    path = workdir / "report.json"
    argv = [sys.executable, "-m", "jarvis_cli", "verify-hang", "--url", url, *args,
            "--json", str(path)]  # fmt: skip
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    report = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return Verdict(done.returncode, report, done.stderr)


def _rows() -> list[Any]:
    return [
        pytest.param(peer, expectation, id=f"{name}[{' '.join(expectation.args) or 'defaults'}]")
        for name, peer in PEERS.items()
        for expectation in peer.runs
    ]


@pytest.mark.e2e
@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
@pytest.mark.parametrize(("peer", "expectation"), _rows())
def test_verify_hang_verdict_on_a_peer_matches_the_table(
    peer: Peer, expectation: Expectation, tmp_path: Path
) -> None:
    """verify-hang gives each peer the verdict, exit code and failing scenarios PEERS
    records: correct servers pass whatever they are built with, broken ones fail in the
    scenarios their bug breaks and in no other."""
    with running(peer, tmp_path) as url:
        port = int(url.rsplit(":", 1)[1])
        args = fill(expectation.args, port=port, log=tmp_path / f"{peer.name}.log")
        run = verify_hang(url, args, tmp_path)
    for text in expectation.says:
        assert text in run.stderr, run.explain()
    if expectation.verdict == USAGE:
        # A set-up error is no verdict: no report, no table, no traceback, exit 2.
        assert run.code == 2, run.explain()
        assert not run.report, run.explain()
        assert "Traceback" not in run.stderr
        return
    assert run.report, run.explain()
    assert run.report["verdict"] == expectation.verdict, run.explain()
    assert run.code == EXIT_CODES[expectation.verdict], run.explain()
    assert expectation.failing <= run.failing, run.explain()
    assert run.failing <= expectation.failing | expectation.by_chance, run.explain()


@pytest.mark.e2e
@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_original_registry_burst_fails_for_two_streams_of_one_session_at_once(
    tmp_path: Path,
) -> None:
    """The original server's registry as written lets every waiter of a burst register once the old
    stream ends: burst's first evidence line says so, naming at least two streams that
    emitted at once (not a complaint about how the streams ended)."""
    with running(PEERS["original_registry"], tmp_path) as url:
        run = verify_hang(url, [], tmp_path)
    assert "burst" in run.failing, run.explain()
    first = run.evidence("burst")[0]
    named = set(re.findall(r"chatcmpl-[0-9a-f]+", first)) or set(re.findall(r"\bP\d\.\d\b", first))
    assert "at once" in first, first
    assert len(named) >= 2, first


def _doc_table() -> dict[tuple[str, tuple[str, ...]], tuple[str, frozenset[str], frozenset[str]]]:
    """The section's table: (server, invocation args) -> (verdict, failing scenarios,
    scenarios failing by chance, marked `?`)."""
    text = DOC.read_text(encoding="utf-8")
    assert DOC_SECTION in text, f"{DOC} has no {DOC_SECTION!r} section"
    section = text.split(DOC_SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table = {}
    for row in rows:
        server, invocation, verdict, failing = (c.strip() for c in row.strip("|").split("|"))
        args = invocation.replace("`", "").split()
        assert args[:3] == ["verify-hang", "--url", "URL"], row
        names = [] if failing == "none" else failing.split(", ")
        always = frozenset(n for n in names if not n.endswith("?"))
        chance = frozenset(n.rstrip("?") for n in names if n.endswith("?"))
        table[(server.strip("`"), tuple(args[3:]))] = (verdict.lower(), always, chance)
    return table


def test_docs_table_of_peers_equals_the_peers_table() -> None:
    """docs/verify-hang.md lists every peer, invocation, verdict and failing scenario
    exactly as PEERS (which the e2e tests check) does, so the page cannot drift."""
    expected = {
        (name, e.args): (e.verdict, e.failing, e.by_chance)
        for name, peer in PEERS.items()
        for e in peer.runs
    }
    assert _doc_table() == expected


@pytest.mark.e2e
@pytest.mark.timeout(30)
def test_running_kills_the_whole_peer_even_when_the_body_raises(tmp_path: Path) -> None:
    """`running()` kills the peer's process group however the block ends: after an
    exception inside it, no worker of the two-process peer still accepts connections."""
    seen: list[str] = []

    def serve_then_fail() -> None:
        with running(PEERS["per_process"], tmp_path) as url:
            seen.append(url)
            assert httpx.get(f"{url}/v1/models", timeout=2).status_code == 200
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        serve_then_fail()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{seen[0]}/v1/models", timeout=2)


@pytest.mark.e2e
@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_replicas_each_with_its_own_registry_fail_when_prompts_take_turns(
    tmp_path: Path,
) -> None:
    """Two processes of a server that is correct alone (stop_done), each with its own
    registry, as behind a balancer without sticky sessions: with both --url, a session's
    prompts take turns between them and overlap finds two streams of one session at once."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    with running(PEERS["stop_done"], one) as first, running(PEERS["stop_done"], two) as second:
        run = verify_hang(first, ["--url", second, "--scenario", "overlap"], tmp_path)
    assert run.code == 1, run.explain()
    assert run.failing == {"overlap"}, run.explain()
    assert run.report["target"]["urls"] == [first, second]
    assert run.evidence("overlap")[0].startswith("two streams of one session emitting at once")


@pytest.mark.e2e
@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_the_first_lines_say_what_was_detected_on_an_unknown_server(tmp_path: Path) -> None:
    """On a server that is not OpenAI (custom_api, through its target file) the banner
    says the dialect, where the session travels, the health probe, that the model is
    unknown (never jarvis's), and what had to be skipped, before any scenario."""
    with running(PEERS["custom_api"], tmp_path) as url:
        run = verify_hang(
            url, ["--target", "tests/peers/custom_api.toml", "--scenario", "baseline"], tmp_path
        )
    assert run.code == 0, run.explain()
    head = run.stderr.splitlines()[:4]
    assert head[0] == f"verify-hang: server {url}", head
    assert head[1] == (
        "verify-hang: dialect target; session in body:conversation_id; "
        "health probe /api/ping; model unknown"
    ), head
    assert head[2].startswith("verify-hang: skipping: the model: the server lists none"), head
    assert "jarvis-synthetic" not in run.stderr
    assert run.report["target"]["model"] is None


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_a_correct_server_whose_model_is_not_deterministic_passes_ten_runs_out_of_ten(
    tmp_path: Path,
) -> None:
    """varying_lengths: answer lengths vary up to 8x between runs of one prompt, and every
    stream ends `stop` + [DONE], superseded or not. Ten full runs in a row all pass: length
    is never a failure on its own, and the overlap and burst verdicts rest on timing."""
    verdicts = []
    with running(PEERS["varying_lengths"], tmp_path) as url:
        for i in range(10):
            workdir = tmp_path / f"run{i}"
            workdir.mkdir()
            run = verify_hang(url, [], workdir)
            verdicts.append((run.code, run.report.get("verdict"), sorted(run.failing)))
            assert run.code == 0, f"run {i + 1} of 10: {run.explain()}"
    assert verdicts == [(0, "pass", [])] * 10


@pytest.mark.e2e
@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_a_url_with_a_wrong_path_is_exit_2_naming_the_request_and_url(tmp_path: Path) -> None:
    """`--url http://host:port/api` on a server at `/`: the first request is a 404, which is
    the set-up's fault: exit 2 at once, naming the request and --url, no verdict, and
    hostile_input never got to 'pass' on 404s."""
    with running(PEERS["stop_done"], tmp_path) as url:
        run = verify_hang(f"{url}/api", [], tmp_path)
    assert run.code == 2, run.explain()
    assert not run.report
    assert f"POST {url}/api/v1/chat/completions answered HTTP 404" in run.stderr
    assert f"check --url (is {url}/api the server's base URL?)" in run.stderr


@pytest.mark.e2e
@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_leftover_tokens_in_the_next_answer_are_corruption_with_the_differing_text(
    tmp_path: Path,
) -> None:
    """leftover_tokens hangs nothing and runs nothing at once; B is even long enough. What
    is wrong is B's text: overlap's first evidence line says corrupted bytes, how many
    characters are not its answer, and quotes them."""
    with running(PEERS["leftover_tokens"], tmp_path) as url:
        run = verify_hang(url, ["--scenario", "overlap"], tmp_path)
    assert run.code == 1, run.explain()
    first = run.evidence("overlap")[0]
    assert re.search(
        r"B\d \S+ \(session \S+\): B is the newest prompt of its session, but corrupted bytes: "
        r"its text starts with \d+ character\(s\) that are not its answer \('[a-z ]+'…?\), "
        r"then the answer a fresh session gets",
        first,
    ), first
    assert "two streams" not in first
    assert not run.report["scenarios"][0]["hung"]


@pytest.mark.e2e
@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_a_server_that_queues_beyond_its_slots_is_slow_with_figures_never_a_hang(
    tmp_path: Path,
) -> None:
    """slots (4 slots, a first-come queue, as llama.cpp): with a --deadline shorter than the
    queue's wait, overlap passes and says how many prompts were in flight, how many
    streamed at once and the waits; nothing says HANG."""
    with running(PEERS["slots"], tmp_path) as url:
        run = verify_hang(url, ["--expect", "independent", "--deadline", "2",
                                "--scenario", "overlap", "--rounds", "2"], tmp_path)  # fmt: skip
    assert run.code == 0, run.explain()
    overlap = run.report["scenarios"][0]
    queueing = overlap["metrics"]["queueing"]
    assert queueing["streaming_max"] == 4, queueing
    assert queueing["in_flight_max"] >= 12, queueing
    assert queueing["wait"]["max_ms"] > 2000, "some prompt waited longer than --deadline"
    assert "at most 4 streamed at once (the server queues the rest)" in overlap["summary"]
    assert "slow, not hung" in overlap["summary"]
    assert run.report["verdict"] == "pass"
    assert "HANG" not in run.stderr


@pytest.mark.e2e
@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_an_engine_that_decodes_on_for_nobody_fails_work_stops_with_how_long(
    tmp_path: Path,
) -> None:
    """ghost_requests ends every stream right on the wire, but its busy gauge stays up 6 s
    after a client leaves or an answer is superseded: work_stops fails, and its evidence
    says how long the engine kept decoding and how many requests it still processed; the
    correct engine_gauge passes with the figure of how soon its gauge fell back."""
    with running(PEERS["ghost_requests"], tmp_path) as url:
        run = verify_hang(url, ["--scenario", "work_stops"], tmp_path)
    assert run.failing == {"work_stops"}, run.explain()
    left, superseded = run.evidence("work_stops")[:2]
    assert re.fullmatch(
        r"the engine kept decoding for [5-8]\.\d s after the client left: 4 requests still "
        r"processing at the 3\.5 s bound \(llamacpp:requests_processing at .*/metrics read 4, "
        r"where it was 0\)",
        left,
    ), left
    assert superseded.startswith("the engine kept decoding for "), superseded
    assert "after its answer was superseded: 2 requests still processing" in superseded
    with running(PEERS["engine_gauge"], tmp_path) as url:
        run = verify_hang(url, ["--scenario", "work_stops"], tmp_path)
    summary = run.report["scenarios"][0]["summary"]
    assert run.code == 0, run.explain()
    assert re.fullmatch(
        r"after 4 drops, the engine was idle again within \d+ ms; after 2 supersedes, the "
        r"engine was down to the new prompts' work within \d+ ms "
        r"\(llamacpp:requests_processing, bound 3\.5 s\)",
        summary,
    ), summary


@pytest.mark.e2e
@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_work_stops_is_not_run_without_a_gauge_and_says_why(tmp_path: Path) -> None:
    """stop_done has no /metrics: work_stops is a skip (never a pass) naming the URL it
    tried and --engine-metrics; the run's verdict rests on the rest."""
    with running(PEERS["stop_done"], tmp_path) as url:
        run = verify_hang(url, ["--scenario", "baseline", "--scenario", "work_stops"], tmp_path)
    assert run.code == 0, run.explain()
    work = run.report["scenarios"][1]
    assert work["status"] == "skip", run.explain()
    assert work["summary"] == (
        f"not run: no busy gauge to read: GET {url}/metrics answered HTTP 404; pass the "
        "engine's own with --engine-metrics http://ENGINE/metrics (behind a proxy, the "
        "engine's, not the proxy's)"
    )
