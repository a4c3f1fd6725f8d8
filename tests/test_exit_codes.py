"""Exit codes: each exception carries its own, and `jarvis` exits with it in one place."""

from __future__ import annotations

import re

import pytest

import jarvis.exceptions
from jarvis.exceptions import (
    BadRequest,
    ConfigError,
    JarvisError,
    ServerStartError,
    ToolError,
    UpstreamError,
)
from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.logs.sources import InputError
from jarvis_cli.main import main
from jarvis_cli.swarm.runner import LocustFailed
from jarvis_cli.swarm.thresholds import ReportMissing
from jarvis_cli.verify.target import SetupError, Unreachable


def _tree(root: type[JarvisError]) -> list[type[JarvisError]]:
    found = [root]
    for child in root.__subclasses__():
        found.extend(_tree(child))
    return found


# Importing jarvis_cli.main (above) imports every command, so every subclass is defined.
ERRORS = _tree(JarvisError)


def test_every_error_carries_an_exit_code_that_exit_codes_names() -> None:
    """No class in the tree can end a command with a code ExitCode does not name."""
    for error in ERRORS:
        assert error.exit_code in set(ExitCode), error


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (JarvisError, ExitCode.FAILURE),
        (ConfigError, ExitCode.USAGE),
        (BadRequest, ExitCode.USAGE),
        (UpstreamError, ExitCode.UNAVAILABLE),
        (ServerStartError, ExitCode.UNAVAILABLE),
        (ToolError, ExitCode.FAILURE),
        (InputError, ExitCode.UNAVAILABLE),
        (Unreachable, ExitCode.UNAVAILABLE),
        (SetupError, ExitCode.USAGE),
        (LocustFailed, ExitCode.UNAVAILABLE),
        (ReportMissing, ExitCode.UNAVAILABLE),
    ],
)
def test_each_error_has_the_code_of_what_it_means(error: type[JarvisError], code: ExitCode) -> None:
    """Bad settings are usage (2), nothing to talk to or read is unavailable (3), else 1."""
    assert error.exit_code == code


def test_the_docstring_tree_draws_every_error_with_its_code() -> None:
    """The drawing in jarvis/exceptions.py names each class once, with its real exit code."""
    doc = jarvis.exceptions.__doc__ or ""
    drawn = dict(re.findall(r"(\w+) \[(\d+)\]", doc))
    assert drawn == {error.__name__: str(error.exit_code) for error in ERRORS}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_main_exits_with_the_code_the_error_carries(
    error: type[JarvisError],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Whatever a command raises, main prints `error: <message>` on stderr and exits with
    the class's code: no command needs an except block of its own, and no traceback shows."""

    def boom(*args: object, **kwargs: object) -> None:
        raise error(f"{error.__name__} went wrong")

    monkeypatch.setattr("jarvis_cli.diagnose.command.analyze", boom)
    code = main(["diagnose", "any.log"])
    err = capsys.readouterr().err
    assert code == error.exit_code
    assert f"error: {error.__name__} went wrong" in err
    assert "Traceback" not in err
