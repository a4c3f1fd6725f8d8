"""`jarvis swarm` against a server that is not jarvis: the real `fakellm serve` (OpenAI and
Anthropic compatible, no jarvis extension, no /v1/models, no sessions) on a free loopback port.

It proves the verdicts hold on any server: completion is read from the protocol (a natural
finish, then `[DONE]` or `message_stop`), interrupts are measured and stale chunks caught
without jarvis's `end_reason`, WrongText is reported off, and failures by kind add up.
Every swarm is bounded (tests/test_swarm.py's `swarm`), and fakellm is killed afterwards.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jarvis_cli.exit_codes import ExitCode

from . import processes
from .swarms import Swarm, swarm

#: Every test here starts real processes (servers, the CLI, a browser): the e2e lane.
pytestmark = pytest.mark.e2e

FAKELLM = Path(sys.executable).parent / "fakellm"
#: 120 words at fakellm's 10 ms a word: each answer streams ~1.2 s, so interrupts land mid-way.
ANSWER = " ".join(f"word{i}" for i in range(120))
#: A short run that still interrupts; fakellm runs a session's prompts side by side.
RUN = ("--users", "5", "--spawn-rate", "5", "--run-time", "8s", "--interrupt-rate", "0.5")
GATE = ("--max-p99-ttft-ms", "1000", "--max-p99-interrupt-ms", "1500", "--max-fail-ratio", "0.01")


@pytest.fixture
def fakellm(tmp_path: Path) -> Iterator[str]:
    """`fakellm serve` on 127.0.0.1 with a long answer for every prompt; its URL.

    It runs in its own folder with a relative --config, so the swarm helper's clean-up
    (which kills what names the test's folder) leaves it to this fixture."""
    home = tmp_path / "fakellm"
    home.mkdir()
    (home / "fakellm.yaml").write_text(
        f'rules:\n  - name: long\n    respond:\n      content: "{ANSWER}"\n', encoding="utf-8"
    )
    argv = [str(FAKELLM), "serve", "--host", processes.HOST, "--port", "0",
            "--config", "fakellm.yaml"]  # fmt: skip
    server = processes.start(argv, name="fakellm", workdir=home, cwd=home, ready="/_fakellm/stats")
    try:
        yield server.url
    finally:
        server.stop()


def count(run: Swarm, label: str) -> int:
    """The count column of a latency row of the summary."""
    line = next(line for line in run.stdout.splitlines() if label in line)
    return int(line.split("│")[2].strip().replace(",", ""))


def kinds_add_up(run: Swarm) -> tuple[int, int]:
    """(the header's stream failures, the sum of the failures by kind)."""
    header = re.search(r"stream failures ([\d,]+)", run.stdout)
    assert header is not None, run.stdout
    line = next(line for line in run.stdout.splitlines() if line.startswith("failures by kind"))
    by_kind = sum(int(n.replace(",", "")) for n in re.findall(r" (\d[\d,]*)", line))
    return int(header.group(1).replace(",", "")), by_kind


@pytest.mark.timeout(90)
@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_completion_is_counted_on_a_server_that_is_not_jarvis(
    tmp_path: Path, fakellm: str, dialect: str
) -> None:
    """fakellm ends each answer with a natural finish and its end marker, and no jarvis
    field: completed streams are counted, interrupts measured, the gate holds (exit 0),
    nothing failed (its missing /v1/models is no failure) and WrongText is reported off."""
    run = swarm(tmp_path, "--url", fakellm, "--dialect", dialect, "--overlap", "independent",
                *RUN, *GATE)  # fmt: skip
    assert run.code == ExitCode.OK, run.stdout + run.stderr
    assert count(run, "full stream (completed)") > 0
    assert count(run, "interrupt → first token") > 0
    assert "failures by kind: none" in run.stdout
    assert "failed HTTP requests" not in run.stdout
    assert "text check (WrongText): off" in run.stdout
    assert "PASS every threshold held" in run.stdout


@pytest.mark.timeout(90)
def test_stale_chunks_are_caught_on_a_server_without_jarvis_extensions(
    tmp_path: Path, fakellm: str
) -> None:
    """fakellm keeps streaming an answer after the same session's next prompt has its first
    chunk: with --overlap supersede (the default) those chunks are StaleChunk, read from
    timing alone; the gate fails (exit 1) and the failures by kind add up to the header."""
    run = swarm(tmp_path, "--url", fakellm, *RUN, *GATE)
    assert run.code == ExitCode.FAILURE, run.stdout + run.stderr
    assert "StaleChunk" in run.stdout
    header, by_kind = kinds_add_up(run)
    assert header == by_kind > 0


@pytest.mark.timeout(90)
def test_a_target_file_speaks_to_any_api_and_its_end_marker_completes(
    tmp_path: Path, fakellm: str
) -> None:
    """A target file (url, request, text path, end marker) and no --url: streams complete
    at the file's end marker, and the file's health path is the reachability probe."""
    target = tmp_path / "fake.toml"
    target.write_text(
        f'url = "{fakellm}"\nhealth = "/_fakellm/stats"\n'
        '[request]\npath = "/v1/chat/completions"\n'
        'body = { model = "any", stream = true, messages = [{ role = "user", '
        'content = "{prompt}" }] }\n'
        '[stream]\ntext = "choices.0.delta.content"\nend = "data:[DONE]"\n',
        encoding="utf-8",
    )
    run = swarm(tmp_path, "--target", str(target), "--overlap", "independent", *RUN, *GATE)
    assert run.code == ExitCode.OK, run.stdout + run.stderr
    assert count(run, "full stream (completed)") > 0
    assert "failures by kind: none" in run.stdout


@pytest.mark.timeout(30)
def test_a_bad_target_file_is_a_usage_error_naming_the_key(tmp_path: Path) -> None:
    """A target file with an unknown key: exit 2, the key named on stderr, no traceback."""
    target = tmp_path / "bad.toml"
    target.write_text('[request]\npath = "/chat"\n[stream]\ntext = "t"\nend = "data:x"\n'
                      'colour = "red"\n', encoding="utf-8")  # fmt: skip
    run = swarm(tmp_path, "--target", str(target), "--url", "http://127.0.0.1:9")
    assert run.code == ExitCode.USAGE
    assert "stream.colour" in run.stderr
    assert "Traceback" not in run.stderr
