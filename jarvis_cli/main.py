"""The `jarvis` entry point: mounts every command and maps errors to exit codes, once.

Each command's module is imported only when that command runs (or when help lists it):
`jarvis diagnose` never loads the server, locust's side of swarm, or redis.
"""

import importlib
import sys
from collections.abc import Callable
from typing import Any

import typer
from typer import _click as click  # typer vendors click; its types are these
from typer.core import TyperGroup

from jarvis import __version__
from jarvis.exceptions import JarvisError

from .console import fail, out
from .exit_codes import ExitCode

#: name -> (module, function) of each command; the function's typer options are its CLI.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("jarvis_cli.serve", "serve"),
    "diagnose": ("jarvis_cli.diagnose.command", "diagnose"),
    "verify-hang": ("jarvis_cli.verify.command", "verify_hang"),
    "swarm": ("jarvis_cli.swarm.command", "swarm"),
}
_CONTEXT = {"help_option_names": ["-h", "--help"]}


def load(name: str) -> Callable[..., Any]:
    """The function behind command `name`, imported now."""
    module, function = COMMANDS[name]
    return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]


class _LazyGroup(TyperGroup):
    """A typer group whose commands are built from their modules on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        single.command(cmd_name, context_settings=_CONTEXT)(load(cmd_name))
        return typer.main.get_command(single)


app = typer.Typer(
    name="jarvis",
    cls=_LazyGroup,
    help="Make LLM chat servers stop hanging when prompts overlap, and prove it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=_CONTEXT,
)


@app.callback()
def _root() -> None:
    """Make LLM chat servers stop hanging when prompts overlap, and prove it."""


@app.command("version")
def version() -> None:
    """Print the jarvis version."""
    out.print(__version__)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; expected failures never show a traceback."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="jarvis")
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:  # typer's (vendored click) usage errors
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            fail(str(exc))
        return ExitCode.USAGE
    except (typer.Abort, KeyboardInterrupt):
        fail("interrupted")
        return ExitCode.INTERRUPTED
    except JarvisError as exc:  # every expected failure: each class carries its exit code
        fail(str(exc))
        return exc.exit_code
    return int(result) if isinstance(result, int) else ExitCode.OK


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
