"""The OpenAI chat-completions request: parsed and validated by hand.

Hand-written rather than a pydantic model so that every refusal is an
OpenAI-style 400 naming the offending `param`, never a 422 or a 500.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..exceptions import BadRequest

DEFAULT_MODEL = "jarvis-synthetic"
MAX_TOKENS_CAP = 1_000_000
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What the server needs from a chat-completions body."""

    model: str
    messages: list[dict[str, Any]]
    prompt: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    raw: dict[str, Any]

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt.split())


def _encodable(text: str, param: str) -> str:
    """Refuse lone surrogates: valid JSON, but not text any model or log can carry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{param} contains an unpaired surrogate", param=param) from None
    return text


def _content_text(content: object, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict):
                raise BadRequest(
                    f"messages[{index}].content parts must be objects",
                    param=f"messages[{index}].content",
                )
            text = part.get("text")
            if part.get("type") == "text" and isinstance(text, str):
                texts.append(text)
        return "".join(texts)
    raise BadRequest(
        f"messages[{index}].content must be a string, a list of parts, or null",
        param=f"messages[{index}].content",
    )


def _optional_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{key} must be an integer", param=key)
    if not 1 <= value <= MAX_TOKENS_CAP:
        raise BadRequest(f"{key} must be between 1 and {MAX_TOKENS_CAP}", param=key)
    return value


def parse_chat_request(raw_body: bytes) -> ChatRequest:
    """Decode and validate a request body, or raise `BadRequest`."""
    try:
        body = json.loads(raw_body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object", code="invalid_json")

    model = body.get("model", DEFAULT_MODEL)
    if not isinstance(model, str) or not model:
        raise BadRequest("model must be a non-empty string", param="model")
    _encodable(model, "model")

    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list", param="messages")
    prompt = ""
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"messages[{index}] must be an object", param=f"messages[{index}]")
        role = message.get("role")
        if role not in _ROLES:
            raise BadRequest(
                f"messages[{index}].role must be one of {sorted(_ROLES)}",
                param=f"messages[{index}].role",
            )
        text = _encodable(
            _content_text(message.get("content"), index), f"messages[{index}].content"
        )
        if role == "user":
            prompt = text

    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest("stream must be a boolean", param="stream")

    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise BadRequest("stream_options must be an object", param="stream_options")
        include_usage = options.get("include_usage", False) is True

    legacy = _optional_int(body, "max_tokens")
    max_tokens = _optional_int(body, "max_completion_tokens") or legacy
    return ChatRequest(
        model=model,
        messages=messages,
        prompt=prompt,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
        raw=body,
    )
