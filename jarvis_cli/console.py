"""The two rich consoles: results on stdout, diagnostics and errors on stderr."""

from __future__ import annotations

from rich.console import Console

out = Console()
err = Console(stderr=True)


def fail(message: str) -> None:
    """Print an error line on stderr (no traceback)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
