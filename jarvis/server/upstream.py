"""Token source that fronts a real OpenAI-compatible server (vLLM, Ollama, llama.cpp).

The upstream request is always streamed. Cancelling the jarvis stream
cancels the task iterating here, and leaving the `async with` closes the
upstream response, so a superseded prompt stops costing upstream tokens.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from ..exceptions import UpstreamError
from .chat import ChatRequest


def chat_url(base: str) -> str:
    """`http://host:8000` and `http://host:8000/v1` both mean the same endpoint."""
    base = base.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/chat/completions"


class UpstreamModel:
    """Streams content deltas from an OpenAI-compatible `/v1/chat/completions`."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        client: httpx.AsyncClient | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
    ) -> None:
        self.name = base_url
        self._url = chat_url(base_url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        )

    async def stream(
        self, request: ChatRequest, on_model: Callable[[str], object] | None = None
    ) -> AsyncGenerator[str, None]:
        body: dict[str, Any] = dict(request.raw)
        body["stream"] = True
        body.pop("stream_options", None)
        try:
            async with self._client.stream("POST", self._url, json=body) as response:
                if response.status_code != 200:
                    detail = (await response.aread())[:200].decode("utf-8", "replace")
                    raise UpstreamError(
                        f"upstream answered {response.status_code}: {detail}",
                        status=response.status_code,
                    )
                # httpx-sse splits lines at CR, LF and CRLF only, as SSE says: a token
                # holding U+2028 or a form feed arrives whole (httpx's own line
                # iterator would cut it).
                named = on_model is None
                async for event in EventSource(response).aiter_sse():
                    if not named:
                        named = _tell_model(event.data, on_model)
                    token = _delta(event.data)
                    if token is None:
                        return
                    if token:
                        yield token
                    # Always yield to the loop: one network read can hold many tokens.
                    await asyncio.sleep(0)
        except SSEError as exc:
            raise UpstreamError(f"upstream did not answer with an event stream: {exc}") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream failed: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        await self._client.aclose()


def _tell_model(data: str, on_model: Callable[[str], object] | None) -> bool:
    """Pass on the model a chunk names (chunks carry the upstream's name, not ours)."""
    try:
        model = json.loads(data).get("model")
    except (ValueError, AttributeError):
        return False
    if isinstance(model, str) and model and on_model is not None:
        on_model(model)
        return True
    return False


def _delta(data: str) -> str | None:
    """The content of one SSE event's data: a token, "" for none, or None at `[DONE]`."""
    if not data.strip():
        return ""
    if data.strip() == "[DONE]":
        return None
    try:
        chunk = json.loads(data)
        choices = chunk.get("choices") or []
        if not choices:
            return ""
        content = (choices[0].get("delta") or {}).get("content")
    except (ValueError, AttributeError, TypeError) as exc:
        raise UpstreamError(f"upstream sent a malformed chunk: {data[:120]!r}") from exc
    return content if isinstance(content, str) else ""
