"""The options that say how to speak to a server (`--dialect`, `--session-in`, `--target`,
`--health`): one definition for every command that has them; `chatapi.resolve` merges
their values."""

from pathlib import Path
from typing import Annotated

import typer

DialectOption = Annotated[
    str | None,
    typer.Option(
        help="The server's chat API: openai (POST /v1/chat/completions) or anthropic "
        "(POST /v1/messages, Messages streaming). Default: openai, or what --target describes.",
        show_default=False,
    ),
]
SessionInOption = Annotated[
    str | None,
    typer.Option(
        help="Where the session id travels: header:NAME, body:DOTTED.PATH, query:NAME or "
        "cookie:NAME. Default: header:X-Session-Id, or the --target file's session.",
        show_default=False,
    ),
]
TargetOption = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE.toml",
        help="A TOML file describing any other chat API (url, health, session, \\[request] "
        "path and body, \\[stream] text and end; docs/verify-hang.md). Flags override it.",
        show_default=False,
    ),
]
HealthOption = Annotated[
    str | None,
    typer.Option(
        help="A cheap path to probe (e.g. /health). Default: the --target file's health, "
        "else /healthz, /health, then the models list.",
        show_default=False,
    ),
]
