"""The flags and a target file, merged once: which URLs, which dialect, where the session
travels, which health path. Flags override the file; every tool resolves them here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jarvis.exceptions import ConfigError

from .dialect import Dialect, dialect_named
from .session import DEFAULT_SESSION_IN, SessionIn
from .targetfile import load_target


@dataclass(frozen=True, slots=True)
class ChatAPI:
    """How to reach and speak to the server under test."""

    urls: tuple[str, ...]
    dialect: Dialect
    session_in: SessionIn
    health: str | None


def chat_api(
    urls: list[str] | tuple[str, ...],
    *,
    dialect: str | None = None,
    session_in: str | None = None,
    target: Path | None = None,
    health: str | None = None,
) -> ChatAPI:
    """Resolve the options; any bad value is a ConfigError (a usage error, exit 2)."""
    if health is not None and not health.startswith("/"):
        raise ConfigError(f"--health must be a path starting with /, not {health!r}")
    chosen_session = SessionIn.parse(session_in) if session_in else None
    if target is None:
        return ChatAPI(
            tuple(urls),
            dialect_named(dialect or "openai"),
            chosen_session or DEFAULT_SESSION_IN,
            health,
        )
    if dialect is not None:
        raise ConfigError("--dialect and --target both say how to speak: give one of them")
    spec = load_target(target)
    if not urls and spec.url is None:
        raise ConfigError(f"--target {target}: no url in the file; pass --url")
    return ChatAPI(
        tuple(urls) or (spec.url or "",),
        spec.dialect,
        chosen_session or spec.session_in or DEFAULT_SESSION_IN,
        health or spec.health,
    )
