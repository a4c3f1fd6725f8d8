"""The `jarvis` command line: help, usage errors and start-up failures, by exit code."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.main import main


def jarvis(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jarvis_cli", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.mark.e2e
def test_serve_help_teaches_the_options_and_the_faults() -> None:
    """`jarvis serve --help` exits 0 and names the key options and every fault."""
    result = jarvis("serve", "--help")
    assert result.returncode == 0
    for word in ("--cancel-wait", "--flush-ms", "--upstream", "blocking-flush", "slow-cleanup"):
        assert word in result.stdout


def test_unknown_fault_is_a_usage_error_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unknown --fault exits 2 and lists the valid names on stderr."""
    code = main(["serve", "--fault", "bogus", "--port", "0"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert "unknown --fault 'bogus'" in err
    assert "no-cancel" in err
    assert "Traceback" not in err


def test_invalid_setting_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A setting that cannot work (negative cancel wait) exits 2 with the reason."""
    code = main(["serve", "--cancel-wait", "-1", "--port", "0"])
    assert code == ExitCode.USAGE
    assert "cancel_wait (--cancel-wait) must be > 0 seconds, not -1" in capsys.readouterr().err


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """click's own usage errors map to exit 2 as well."""
    assert main(["serve", "--no-such-flag"]) == ExitCode.USAGE
    assert "No such option" in capsys.readouterr().err


@pytest.mark.e2e
def test_port_in_use_exits_3_with_a_clear_message(tmp_path) -> None:
    """A taken port is exit 3 (server failed to start) and says which address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = jarvis("serve", "--port", str(port), "--log-file", str(tmp_path / "x.log"))
    assert result.returncode == ExitCode.UNAVAILABLE
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
def test_unwritable_log_file_is_a_usage_error(tmp_path) -> None:
    """A log path that cannot be opened is refused before the server starts."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = jarvis("serve", "--port", "0", "--log-file", str(blocker / "sub" / "x.log"))
    assert result.returncode == ExitCode.USAGE
    assert "cannot open log file" in result.stderr
