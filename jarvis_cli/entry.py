"""The `jarvis` console script: says which extra to install before anything needs it.

`pip install jarvis-streamkit` installs the library alone, yet pip installs the
`jarvis` script with it; without the `cli` extra, the script explains instead of
failing with an ImportError.
"""

from __future__ import annotations

import importlib.util
import sys

#: What the command-line tools import, each from the `cli` extra (which takes `server`).
NEEDS = ("typer", "rich", "fastapi", "uvicorn", "httpx", "httpx_sse")
#: `ExitCode.USAGE`, without importing the CLI to read it.
USAGE = 2


def missing() -> list[str]:
    """The modules of the `cli` extra this Python cannot import."""
    return [name for name in NEEDS if importlib.util.find_spec(name) is None]


def run() -> None:
    """Console-script entry point."""
    absent = missing()
    if absent:
        sys.stderr.write(
            f"jarvis: the command-line tools need the cli extra ({', '.join(absent)} "
            "missing): pip install 'jarvis-streamkit[cli]'\n"
        )
        sys.exit(USAGE)
    from .main import run as run_cli

    run_cli()
