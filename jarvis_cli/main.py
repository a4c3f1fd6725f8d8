"""The `jarvis` entry point: mounts every command and maps errors to exit codes, once."""

import sys

import typer

from jarvis import __version__
from jarvis.exceptions import JarvisError

from .console import fail, out
from .diagnose.command import diagnose
from .exit_codes import ExitCode
from .serve import serve
from .swarm.command import swarm
from .verify.command import verify_hang

app = typer.Typer(
    name="jarvis",
    help="Make LLM chat servers stop hanging when prompts overlap, and prove it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("serve")(serve)
app.command("diagnose")(diagnose)
app.command("verify-hang")(verify_hang)
app.command("swarm")(swarm)


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
