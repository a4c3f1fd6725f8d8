"""Chat dialects: how to ask a server for a streamed answer and what each SSE event means.

`openai` is chat completions (`data: {...choices[].delta.content}` ... `data:
[DONE]`), `anthropic` is Messages streaming (`message_start`,
`content_block_delta`, `message_delta`, `message_stop`), and a target file
describes any other API (`targetfile.py`). A dialect turns one event into a
`Piece`: text, a finish reason, an end marker, an error; nothing in a verdict
reads the wire any other way.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jarvis.exceptions import ConfigError

from .headers import merged
from .request import ChatRequest
from .session import SessionIn
from .sse import Event

#: OpenAI `finish_reason`s that mean the model finished on its own.
OPENAI_NATURAL = frozenset({"stop", "length"})
#: Anthropic `stop_reason`s that mean the same.
ANTHROPIC_NATURAL = frozenset({"end_turn", "max_tokens", "stop_sequence"})
#: Anthropic requires max_tokens; used when the caller sets none.
ANTHROPIC_DEFAULT_MAX_TOKENS = 1024


@dataclass(frozen=True, slots=True)
class Piece:
    """What one event says, in any dialect."""

    text: str = ""
    #: Why the model stopped, as the server words it (`stop`, `end_turn`, `cancelled`...).
    finish: str | None = None
    #: `finish` is a natural end (the model was done), not a cut.
    natural: bool = False
    #: jarvis's own extension (`"jarvis": {"end_reason": ...}`), read only when present.
    end_reason: str | None = None
    #: The dialect's end-of-stream marker (`[DONE]`, `message_stop`, a target's `end`).
    done: bool = False
    stream_id: str | None = None
    #: An error event, as text.
    error: str | None = None
    #: Not what the dialect defines (data that is not JSON, say): a corrupted stream.
    malformed: bool = False
    #: Tokens the server says it generated for this answer (OpenAI `usage.completion_tokens`,
    #: Anthropic `usage.output_tokens`), when an event reports them.
    tokens: int | None = None


def _json(data: str) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _count(holder: object, key: str) -> int | None:
    """A token count from a `usage` object: a non-negative integer, else None (a bool or
    a float is no count)."""
    usage = holder.get("usage") if isinstance(holder, dict) else None
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if type(value) is int and value >= 0 else None


def _error_text(value: object) -> str:
    if isinstance(value, dict):
        message = value.get("message")
        if isinstance(message, str):
            return message
    return json.dumps(value)[:200]


class Dialect(ABC):
    """A chat API: its request and the meaning of its events."""

    name: str
    path: str
    method: str = "POST"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.path}>"

    @abstractmethod
    def body(
        self, prompt: str, *, model: str, max_tokens: int | None, session: str | None = None
    ) -> dict[str, Any]:
        """The JSON body asking for a streamed answer to `prompt` (`session` only for a
        body that names it itself, as a target file's may)."""

    @abstractmethod
    def read(self, event: Event) -> Piece | None:
        """What `event` says; None for events that carry nothing (pings, block starts)."""

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def request(
        self,
        prompt: str,
        *,
        session: str | None,
        session_in: SessionIn,
        model: str,
        max_tokens: int | None,
        headers: Mapping[str, str] | None = None,
    ) -> ChatRequest:
        """The whole request, the session placed where this server reads it. `headers`
        (the user's --header and API key) go over the dialect's own, under the session."""
        body = self.body(prompt, model=model, max_tokens=max_tokens, session=session)
        request = ChatRequest(self.path, body, method=self.method)
        request.headers.update(merged(self.extra_headers(), headers or {}))
        if session is not None:
            session_in.place(
                session,
                headers=request.headers,
                body=request.body,
                params=request.params,
                cookies=request.cookies,
            )
        return request

    def extra_headers(self) -> dict[str, str]:
        return {}

    @property
    def models_path(self) -> str | None:
        """Where the server lists its models, if the dialect has such a thing."""
        return "/v1/models"


class OpenAI(Dialect):
    name = "openai"
    path = "/v1/chat/completions"

    def body(
        self, prompt: str, *, model: str, max_tokens: int | None, session: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
        }
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        return body

    def read(self, event: Event) -> Piece | None:
        if event.data.strip() == "[DONE]":
            return Piece(done=True)
        value = _json(event.data)
        if value is None:
            return Piece(malformed=True)
        if event.event == "error" or ("error" in value and "choices" not in value):
            return Piece(error=_error_text(value.get("error", value)))
        text: list[str] = []
        finish: str | None = None
        for choice in value.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                text.append(delta["content"])
            if isinstance(choice.get("finish_reason"), str):
                finish = choice["finish_reason"]
        extra = value.get("jarvis")
        end = extra.get("end_reason") if isinstance(extra, dict) else None
        chunk_id = value.get("id")
        return Piece(
            text="".join(text),
            finish=finish,
            natural=finish in OPENAI_NATURAL,
            end_reason=end if isinstance(end, str) else None,
            stream_id=chunk_id if isinstance(chunk_id, str) else None,
            tokens=_count(value, "completion_tokens"),
        )


class Anthropic(Dialect):
    name = "anthropic"
    path = "/v1/messages"

    def body(
        self, prompt: str, *, model: str, max_tokens: int | None, session: str | None = None
    ) -> dict[str, Any]:
        return {
            "model": model,
            "max_tokens": max_tokens or ANTHROPIC_DEFAULT_MAX_TOKENS,
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
        }

    def extra_headers(self) -> dict[str, str]:
        return {"anthropic-version": "2023-06-01"}

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"x-api-key": api_key} if api_key else {}

    def read(self, event: Event) -> Piece | None:  # noqa: PLR0911 - one per event type
        value = _json(event.data)
        if value is None:
            return Piece(malformed=True)
        kind = value.get("type") if isinstance(value.get("type"), str) else event.event
        if kind == "message_stop":
            return Piece(done=True)
        if kind == "error":
            return Piece(error=_error_text(value.get("error", value)))
        field = _ANTHROPIC_FIELDS.get(str(kind))
        if field is None:
            return None  # ping, content_block_start/stop: nothing to read
        outer, inner = field
        holder = value.get(outer)
        found = holder.get(inner) if isinstance(holder, dict) else None
        if not isinstance(found, str):
            return None
        if kind == "message_start":
            return Piece(stream_id=found)
        if kind == "message_delta":
            return Piece(
                finish=found,
                natural=found in ANTHROPIC_NATURAL,
                tokens=_count(value, "output_tokens"),
            )
        return Piece(text=found)


#: Where each Anthropic event keeps what it says: (object, field).
_ANTHROPIC_FIELDS = {
    "message_start": ("message", "id"),
    "content_block_delta": ("delta", "text"),
    "message_delta": ("delta", "stop_reason"),
}


DIALECTS: dict[str, type[Dialect]] = {"openai": OpenAI, "anthropic": Anthropic}


def dialect_named(name: str) -> Dialect:
    """`openai` or `anthropic`; anything else is a usage error."""
    try:
        return DIALECTS[name.strip().lower()]()
    except KeyError:
        choices = " or ".join(DIALECTS)
        raise ConfigError(
            f"--dialect takes {choices}, not {name!r} (any other API: --target FILE.toml)"
        ) from None
