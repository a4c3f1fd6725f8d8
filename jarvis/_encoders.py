"""Wire formats of one stream: what a batch of text and the end of a stream look like.

`StreamGuard.response(encode=...)` takes an *encoding*: a callable that is
given the stream id and returns the `Encoder` of that one stream. The guard
decides when to write (batching, fencing, cleanup); the encoder decides only
the bytes. Three ship with the library: OpenAI `chat.completion.chunk` (the
default), plain-text SSE, and Anthropic's Messages events.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .vocabulary import EndReason

DONE = b"data: [DONE]\n\n"
SSE_MEDIA_TYPE = "text/event-stream; charset=utf-8"


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """How a stream ended, handed to the encoder for its last bytes.

    `reason` is the `stream_end reason=` of the log; `tokens` counts the tokens
    the stream produced; `error` is set when the token source failed.
    """

    reason: EndReason
    tokens: int
    error: str | None = None


class Encoder(Protocol):
    """The bytes of one stream. Called only by the guard, never concurrently."""

    #: The response's `content-type`.
    media_type: str

    def head(self) -> bytes:
        """Sent once, right after the response starts (b"" for nothing)."""
        ...

    def content(self, text: str) -> bytes:
        """One batch of text (one or more tokens) as one event."""
        ...

    def end(self, end: StreamEnd) -> bytes:
        """The stream's last bytes: a terminal event, a terminator, or b""."""
        ...


#: What `encode=` takes: given the stream id, the encoder of that stream.
Encoding = Callable[[str], Encoder]
#: A model name, or a callable asked at the stream's first event (a proxy learns the
#: name from its upstream's first chunk).
ModelName = str | Callable[[], str]


@runtime_checkable
class NamedEncoding(Protocol):
    """An encoding that names its model (`OpenAIChunks`, `AnthropicEvents`, or yours).

    The model is a property of the encoding, shared by its streams, not of one
    stream's `Encoder`: the guard reads it once per stream for `stream_start model=`.
    """

    model: ModelName

    def __call__(self, stream_id: str) -> Encoder: ...


def id_prefix_of(encode: Encoding) -> str:
    """How the ids of `encode`'s streams begin: its `id_prefix` attribute (OpenAI's
    `chatcmpl-`), or nothing for an encoding that has none."""
    prefix = getattr(encode, "id_prefix", "")
    return prefix if isinstance(prefix, str) else ""


def model_of(encode: Encoding) -> str:
    """The model `encode` names, asked now; "" for an encoding that names none."""
    if not isinstance(encode, NamedEncoding):
        return ""
    model = encode.model
    return model() if callable(model) else model


def _dumps(data: object) -> str:
    return json.dumps(data, separators=(",", ":"))


def finish_reason_for(reason: EndReason, *, hit_max_tokens: bool) -> str:
    """OpenAI's `finish_reason` for how a stream ended."""
    if reason is EndReason.COMPLETED:
        return "length" if hit_max_tokens else "stop"
    return "error" if reason is EndReason.ERROR else "cancelled"


class OpenAIChunks:
    """OpenAI `chat.completion.chunk` events, the chunk `id` being the stream id
    (`chatcmpl-` and 24 hex digits, as OpenAI's).

    The end is a chunk with `finish_reason` (`stop`, `length`, `cancelled` or
    `error`) that also says jarvis's `end_reason`, the usage chunk when asked
    for, and `data: [DONE]`, so every stream ends the way OpenAI clients expect.
    """

    #: How the ids of its streams begin, as OpenAI's do.
    id_prefix = "chatcmpl-"

    def __init__(
        self,
        model: ModelName = "unknown",
        *,
        include_usage: bool = False,
        prompt_tokens: int = 0,
        max_tokens: int | None = None,
        created: int | None = None,
    ) -> None:
        self.model = model
        self.include_usage = include_usage
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.created = created

    def __repr__(self) -> str:
        return f"OpenAIChunks(model={self.model!r})"

    def __call__(self, stream_id: str) -> Encoder:
        return _OpenAIStream(self, stream_id)


class _OpenAIStream:
    """One stream's chunks; the constant part of a chunk is encoded once per stream,
    so a token costs one `json.dumps` of its text."""

    media_type = SSE_MEDIA_TYPE

    def __init__(self, spec: OpenAIChunks, stream_id: str) -> None:
        self._spec = spec
        self._stream_id = stream_id
        self._created = spec.created if spec.created is not None else int(time.time())
        self._prefix_first = b""
        self._prefix = b""
        self._head_json = ""
        self._tail = b'},"finish_reason":null}]}\n\n'
        self._first = True

    def _frame(self) -> None:
        model = self._spec.model
        name = model() if callable(model) else model
        head = {"id": self._stream_id, "object": "chat.completion.chunk", "created": self._created}
        self._head_json = _dumps(head)[:-1] + ',"model":' + _dumps(name)
        delta = ',"choices":[{"index":0,"delta":{'
        self._prefix_first = (
            "data: " + self._head_json + delta + '"role":"assistant","content":'
        ).encode()
        self._prefix = ("data: " + self._head_json + delta + '"content":').encode()

    def head(self) -> bytes:
        return b""

    def content(self, text: str) -> bytes:
        if self._first:
            self._first = False
            self._frame()
            prefix = self._prefix_first
        else:
            prefix = self._prefix
        return prefix + json.dumps(text).encode() + self._tail

    def _event(self, extra: dict[str, Any]) -> bytes:
        return ("data: " + self._head_json + "," + _dumps(extra)[1:] + "\n\n").encode()

    def end(self, end: StreamEnd) -> bytes:
        if not self._head_json:
            self._frame()
        max_tokens = self._spec.max_tokens
        finish_reason = finish_reason_for(
            end.reason, hit_max_tokens=max_tokens is not None and end.tokens >= max_tokens
        )
        extra: dict[str, Any] = {
            "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}],
            "jarvis": {"end_reason": end.reason.value},
        }
        if end.error is not None:
            extra["error"] = {"message": end.error, "type": "upstream_error"}
        body = self._event(extra)
        if self._spec.include_usage:
            prompt = self._spec.prompt_tokens
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": end.tokens,
                "total_tokens": prompt + end.tokens,
            }
            body += self._event({"choices": [], "usage": usage})
        return body + DONE


class PlainText:
    """Plain-text SSE: each batch is one `data:` event holding the text itself.

    A batch with line breaks becomes several `data:` lines of one event (the
    client joins them with LF, as the SSE spec says). The end is
    `event: end` whose data is the end reason, then the error if any.
    """

    def __repr__(self) -> str:
        return "PlainText()"

    def __call__(self, stream_id: str) -> Encoder:
        return _PlainTextStream()


def _data_lines(text: str) -> bytes:
    # SSE lines end at CR, LF or CRLF: each line of the text is a data line of its own.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "".join(f"data: {line}\n" for line in lines).encode() + b"\n"


class _PlainTextStream:
    media_type = SSE_MEDIA_TYPE

    def head(self) -> bytes:
        return b""

    def content(self, text: str) -> bytes:
        return _data_lines(text)

    def end(self, end: StreamEnd) -> bytes:
        body = end.reason.value if end.error is None else f"{end.reason.value}\n{end.error}"
        return b"event: end\n" + _data_lines(body)


class AnthropicEvents:
    """Anthropic Messages streaming events (`message_start` ... `message_stop`).

    A completed stream ends with `message_delta` (`stop_reason` `end_turn`, or
    `max_tokens` when it hit the limit) and `message_stop`. Any other end is an
    `error` event whose type says why (`superseded`, `disconnected`, ...),
    since the Messages API has no stop reason for a cancelled answer.
    """

    def __init__(
        self, model: ModelName = "unknown", *, max_tokens: int | None = None, input_tokens: int = 0
    ) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.input_tokens = input_tokens

    def __repr__(self) -> str:
        return f"AnthropicEvents(model={self.model!r})"

    def __call__(self, stream_id: str) -> Encoder:
        return _AnthropicStream(self, stream_id)


def _sse_event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {_dumps(data)}\n\n".encode()


class _AnthropicStream:
    media_type = SSE_MEDIA_TYPE

    def __init__(self, spec: AnthropicEvents, stream_id: str) -> None:
        self._spec = spec
        self._id = "msg_" + stream_id.removeprefix("chatcmpl-").removeprefix("msg_")

    def head(self) -> bytes:
        model = self._spec.model
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": model() if callable(model) else model,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": self._spec.input_tokens, "output_tokens": 0},
        }
        block = {"type": "content_block_start", "index": 0}
        return _sse_event("message_start", {"type": "message_start", "message": message}) + (
            _sse_event(
                "content_block_start", {**block, "content_block": {"type": "text", "text": ""}}
            )
        )

    def content(self, text: str) -> bytes:
        delta = {"type": "content_block_delta", "index": 0}
        return _sse_event(
            "content_block_delta", {**delta, "delta": {"type": "text_delta", "text": text}}
        )

    def end(self, end: StreamEnd) -> bytes:
        stop = _sse_event("content_block_stop", {"type": "content_block_stop", "index": 0})
        if end.reason is not EndReason.COMPLETED:
            kind = "api_error" if end.reason is EndReason.ERROR else end.reason.value
            message = end.error or f"the stream ended: {end.reason.value}"
            return stop + _sse_event(
                "error", {"type": "error", "error": {"type": kind, "message": message}}
            )
        limit = self._spec.max_tokens
        stop_reason = "max_tokens" if limit is not None and end.tokens >= limit else "end_turn"
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": end.tokens},
        }
        return (
            stop
            + _sse_event("message_delta", delta)
            + _sse_event("message_stop", {"type": "message_stop"})
        )
