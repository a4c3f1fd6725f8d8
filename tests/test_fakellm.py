"""`jarvis verify-hang` against fakellm, a real third-party OpenAI/Anthropic mock server:
it keeps no one-stream-per-session promise, and verify-hang must say exactly that.

fakellm streams a rule's content word by word at 10 ms a word and ignores max_tokens,
so the long rule's 300+ words keep a stream open for over 3 s.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import processes
from .test_peers import RUN_TIMEOUT_S, verify_hang

STARTUP_DEADLINE_S = 15.0
#: fakellm has neither /healthz nor /v1/models; its stats page is cheap.
HEALTH = "/_fakellm/stats"
LONG_WORDS = 300

CONFIG = f"""\
rules:
  - name: long-essay
    when:
      messages_contain: "Long essay"
    respond:
      content: "{" ".join(f"word{i}" for i in range(LONG_WORDS))}"
  - name: short-answer
    respond:
      content: "Two plus two is four, which is the answer to your question today."
"""


@pytest.fixture
def fakellm(tmp_path: Path) -> Iterator[str]:
    """`fakellm serve` on port 0 (the port read back), its group killed afterwards."""
    config = tmp_path / "fakellm.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    argv = [sys.executable, "-m", "fakellm.cli", "serve", "--host", processes.HOST,
            "--port", "0", "--config", str(config)]  # fmt: skip
    server = processes.start(argv, name="fakellm", workdir=tmp_path, cwd=tmp_path, ready=HEALTH)
    try:
        yield server.url
    finally:
        server.stop(signal.SIGKILL)


@pytest.mark.e2e
@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
@pytest.mark.parametrize(
    "dialect",
    [pytest.param([], id="openai"), pytest.param(["--dialect", "anthropic"], id="anthropic")],
)
def test_fakellm_passes_when_overlapping_prompts_may_run_side_by_side(
    fakellm: str, dialect: list[str], tmp_path: Path
) -> None:
    """fakellm runs every prompt to completion on its own: under `--expect independent`
    that is the promise kept, in the OpenAI and the Anthropic dialect alike."""
    run = verify_hang(fakellm, ["--health", HEALTH, *dialect, "--expect", "independent"], tmp_path)
    assert run.report.get("verdict") == "pass", run.explain()
    assert run.code == 0, run.explain()


@pytest.mark.e2e
@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_fakellm_fails_supersede_because_two_streams_of_a_session_run_at_once(
    fakellm: str, tmp_path: Path
) -> None:
    """Under the default `--expect supersede` fakellm fails overlap for the right reason:
    A is never superseded and streams beside B; its streams end properly, so no
    evidence may blame how a stream ended."""
    run = verify_hang(fakellm, ["--health", HEALTH], tmp_path)
    assert run.report.get("verdict") == "fail", run.explain()
    assert run.code == 1, run.explain()
    assert "overlap" in run.failing, run.explain()
    evidence = run.evidence("overlap")
    assert "at once" in evidence[0] or "never superseded" in evidence[0], evidence[0]
    blamed = [line for line in evidence if "terminator" in line or "[DONE]" in line]
    assert not blamed, blamed
