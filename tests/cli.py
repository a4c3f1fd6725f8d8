"""Run `jarvis ...` in this process: the exit code and what it printed, as a subprocess
would give them, for tests of logic (a test of the process itself spawns one, marked e2e)."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from collections.abc import Iterator

from jarvis_cli.main import main


def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`jarvis *argv` through `main()`, stdout and stderr captured (rich writes to
    whatever sys.stdout is at the time, so redirecting catches its output too)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        if stdin is not None:
            stack.enter_context(_stdin(stdin))
        code = main(list(argv))
    return subprocess.CompletedProcess(["jarvis", *argv], code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _stdin(text: str) -> Iterator[None]:
    """`sys.stdin` reads `text` (with a `.buffer`, as `-` inputs read bytes)."""
    previous = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8")
    try:
        yield
    finally:
        sys.stdin = previous
