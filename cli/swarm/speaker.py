"""How a swarm speaks to its server: the dialect, where the session id travels, and a
target file, resolved once here for both `jarvis swarm` and the locustfile.

Flags override the target file, which overrides the defaults (`openai`,
`header:X-Session-Id`). Everything is read by `jarvis_cli.chatapi`, the package
verify-hang uses too, so a server is spoken to the same way by every tool.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..chatapi import Dialect, SessionIn, TargetFile, dialect_named, load_target

DEFAULT_DIALECT = "openai"
DEFAULT_SESSION_IN = "header:X-Session-Id"


@dataclass(frozen=True, slots=True)
class Speaker:
    """The resolved choice: a dialect, a session placement, and the file, if any."""

    dialect: Dialect
    session_in: SessionIn
    file: TargetFile | None = None

    @property
    def url(self) -> str | None:
        """The target file's server, when it names one (`--url` overrides it)."""
        return self.file.url if self.file is not None else None

    @property
    def probe_path(self) -> str:
        """What to GET to see that the server is there: the file's `health`, else the
        dialect's model list, else `/`. Any HTTP answer counts."""
        if self.file is not None and self.file.health:
            return self.file.health
        return self.dialect.models_path or "/"


def resolve(
    *, target: Path | str | None = None, dialect: str | None = None, session_in: str | None = None
) -> Speaker:
    """Flags over the file over the defaults; a bad value is a ConfigError naming the key."""
    file = load_target(Path(target)) if target else None
    if dialect:
        chosen = dialect_named(dialect)
    elif file is not None:
        chosen = file.dialect
    else:
        chosen = dialect_named(DEFAULT_DIALECT)
    if session_in:
        place = SessionIn.parse(session_in)
    elif file is not None and file.session_in is not None:
        place = file.session_in
    else:
        place = SessionIn.parse(DEFAULT_SESSION_IN)
    return Speaker(chosen, place, file)
