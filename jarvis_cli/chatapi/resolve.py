"""The flags and a target file, merged once: which URLs, which dialect, where the session
travels, which health path. Flags override the file, which overrides the defaults
(`openai`, `header:X-Session-Id`); verify-hang, swarm and the locustfile all resolve
them here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jarvis.exceptions import ConfigError

from .dialect import Dialect, dialect_named
from .session import DEFAULT_SESSION_IN, SessionIn
from .targetfile import TargetFile, load_target

DEFAULT_DIALECT = "openai"


@dataclass(frozen=True, slots=True)
class ChatAPI:
    """How to reach and speak to the server under test."""

    #: `--url`s, else the target file's url, else none (the embedded server).
    urls: tuple[str, ...]
    dialect: Dialect
    session_in: SessionIn
    #: `--health`, else the target file's.
    health: str | None
    file: TargetFile | None = None

    @property
    def probe_path(self) -> str:
        """What to GET to see that the server is there (any HTTP answer counts): the
        health path, else the dialect's model list, else `/`."""
        return self.health or self.dialect.models_path or "/"


def chat_api(
    urls: list[str] | tuple[str, ...] = (),
    *,
    dialect: str | None = None,
    session_in: str | None = None,
    target: Path | str | None = None,
    health: str | None = None,
) -> ChatAPI:
    """Resolve the options; any bad value is a ConfigError (a usage error, exit 2)."""
    if health is not None and not health.startswith("/"):
        raise ConfigError(f"--health must be a path starting with /, not {health!r}")
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
        place = DEFAULT_SESSION_IN
    from_file = (file.url,) if file is not None and file.url else ()
    return ChatAPI(
        tuple(urls) or from_file,
        chosen,
        place,
        health or (file.health if file is not None else None),
        file,
    )
