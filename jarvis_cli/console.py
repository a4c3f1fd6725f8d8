"""The two rich consoles: results on stdout, diagnostics and errors on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

out = Console()
err = Console(stderr=True)


def fail(message: str) -> None:
    """Print an error line on stderr (no traceback). The message is text, never markup:
    it may quote what a server sent (`[/]` in a body must not break the line)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
