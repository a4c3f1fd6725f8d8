"""`--target FILE.toml`: any other chat API, described in a few lines.

    url = "http://127.0.0.1:9000"
    health = "/api/ping"                 # optional cheap probe
    session = "body:conversation_id"
    [request]
    path = "/api/chat"
    body = { message = "{prompt}", conversation_id = "{session}" }
    [stream]
    text = "delta.text"                  # dotted path, in each event's JSON data
    end = "event:done"                   # an SSE event name, or data:LITERAL

The placeholders are `{prompt}`, `{session}`, `{max_tokens}` and `{model}`; a
string that is exactly one placeholder becomes the value itself (an int for
`{max_tokens}`), and a key whose value is exactly `{session}` or
`{max_tokens}` is left out when there is none. A bad file is a usage error
that names the key.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jarvis.exceptions import ConfigError

from .dialect import Dialect, Piece
from .session import SessionIn, get_path
from .sse import Event

_PLACEHOLDER = re.compile(r"\{(prompt|session|max_tokens|model)\}")
_TOP = {"url", "health", "session", "request", "stream"}
_REQUEST = {"path", "method", "body", "headers"}
_STREAM = {"text", "end", "id", "finish", "error"}
#: What a target's `finish` values mean when it names none of its own.
_NATURAL = frozenset({"stop", "length", "end_turn", "max_tokens", "done", "complete"})


@dataclass(frozen=True, slots=True)
class Marker:
    """`event:NAME` (an SSE event type) or `data:LITERAL` (an event's whole data)."""

    kind: str
    value: str

    @classmethod
    def parse(cls, text: object, key: str) -> Marker:
        if not isinstance(text, str):
            raise ConfigError(f"{key} must be a string like event:done or data:[DONE]")
        kind, colon, value = text.partition(":")
        if not colon or kind not in ("event", "data") or not value:
            raise ConfigError(f"{key} = {text!r}: write event:NAME or data:LITERAL")
        return cls(kind, value)

    def matches(self, event: Event) -> bool:
        if self.kind == "event":
            return event.event == self.value
        return event.data.strip() == self.value


class TemplateDialect(Dialect):
    """A dialect read from a target file."""

    name = "target"

    def __init__(
        self,
        *,
        path: str,
        method: str,
        body: dict[str, Any],
        headers: dict[str, str],
        text: str,
        end: Marker,
        stream_id: str | None,
        finish: str | None,
        error: Marker | None,
    ) -> None:
        self.path = path
        self.method = method
        self._body = body
        self._headers = headers
        self._text = text
        self._end = end
        self._id = stream_id
        self._finish = finish
        self._error = error

    def body(
        self, prompt: str, *, model: str, max_tokens: int | None, session: str | None = None
    ) -> dict[str, Any]:
        values: dict[str, object] = {
            "prompt": prompt,
            "model": model,
            "max_tokens": max_tokens,
            "session": session,
        }
        filled = _fill(self._body, values)
        assert isinstance(filled, dict)
        return filled

    def extra_headers(self) -> dict[str, str]:
        return dict(self._headers)

    @property
    def models_path(self) -> str | None:
        return None

    def read(self, event: Event) -> Piece | None:
        if self._end.matches(event):
            return Piece(done=True, natural=True)
        if self._error is not None and self._error.matches(event):
            return Piece(error=event.data[:200] or event.event)
        try:
            value = json.loads(event.data)
        except ValueError:
            return Piece(malformed=True)
        text = get_path(value, self._text)
        stream_id = get_path(value, self._id) if self._id else None
        finish = get_path(value, self._finish) if self._finish else None
        return Piece(
            text=text if isinstance(text, str) else "",
            finish=finish if isinstance(finish, str) else None,
            natural=isinstance(finish, str) and finish in _NATURAL,
            stream_id=stream_id if isinstance(stream_id, str) else None,
        )


def _fill(template: object, values: dict[str, object]) -> object:
    """Substitute the placeholders; a key whose value is exactly one that has no value
    (no session, no max_tokens) is left out."""
    if isinstance(template, dict):
        out: dict[str, object] = {}
        for key, item in template.items():
            whole = _PLACEHOLDER.fullmatch(item) if isinstance(item, str) else None
            if whole and whole.group(1) in values:
                if values[whole.group(1)] is None:
                    continue  # no session, no max_tokens: leave the key out
                out[key] = values[whole.group(1)]
            else:
                out[key] = _fill(item, values)
        return out
    if isinstance(template, list):
        return [_fill(item, values) for item in template]
    if isinstance(template, str):
        return _PLACEHOLDER.sub(
            lambda m: str(values.get(m.group(1)) or "") if m.group(1) in values else m.group(0),
            template,
        )
    return template


@dataclass(frozen=True, slots=True)
class TargetFile:
    """What a target file says: where the server is and how to speak to it."""

    path: Path
    url: str | None
    health: str | None
    session_in: SessionIn | None
    dialect: TemplateDialect


def _unknown(table: dict[str, Any], known: set[str], where: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"unknown key {where}{key}; known: {', '.join(sorted(known))}")


def _string(table: dict[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = table.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}{key} is required")
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}{key} must be a non-empty string")
    return value


def load_target(path: Path) -> TargetFile:
    """Read and check a target file; any problem is a ConfigError naming the key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--target {path}: cannot read it ({exc.strerror})") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--target {path}: not valid TOML ({exc})") from exc
    try:
        return _target(path, raw)
    except ConfigError as exc:
        raise ConfigError(f"--target {path}: {exc}") from None


def _target(path: Path, raw: dict[str, Any]) -> TargetFile:
    _unknown(raw, _TOP, "")
    request, stream = raw.get("request"), raw.get("stream")
    if not isinstance(request, dict):
        raise ConfigError("[request] is required (with path and body)")
    if not isinstance(stream, dict):
        raise ConfigError("[stream] is required (with text and end)")
    _unknown(request, _REQUEST, "request.")
    _unknown(stream, _STREAM, "stream.")
    req_path = _string(request, "path", "request.", required=True)
    assert req_path is not None
    if not req_path.startswith("/"):
        raise ConfigError(f"request.path must start with /, not {req_path!r}")
    body = request.get("body", {})
    if not isinstance(body, dict):
        raise ConfigError("request.body must be a table")
    headers = request.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError("request.headers must be a table of strings")
    method = (_string(request, "method", "request.") or "POST").upper()
    if method not in ("POST", "PUT"):
        raise ConfigError(f"request.method must be POST or PUT, not {method!r}")
    health = _string(raw, "health", "")
    if health is not None and not health.startswith("/"):
        raise ConfigError(f"health must be a path starting with /, not {health!r}")
    session = _string(raw, "session", "")
    error = _string(stream, "error", "stream.")
    dialect = TemplateDialect(
        path=req_path,
        method=method,
        body=body,
        headers=headers,
        text=_string(stream, "text", "stream.", required=True) or "",
        end=Marker.parse(stream.get("end"), "stream.end"),
        stream_id=_string(stream, "id", "stream."),
        finish=_string(stream, "finish", "stream."),
        error=Marker.parse(error, "stream.error") if error else None,
    )
    return TargetFile(
        path=path,
        url=_string(raw, "url", ""),
        health=health,
        session_in=SessionIn.parse(session, option="session") if session else None,
        dialect=dialect,
    )
