"""An async SSE client for chat completions: hard deadlines, arrival times, stream ids.

httpx's timeouts bound one read, not a whole stream, so every request here
runs under `asyncio.timeout(deadline)` as well: a server that trickles bytes
forever, or none at all, still yields a `Transcript` marked `hung` in time.
Every `data:` event is stamped when it arrives and keeps its chunk `id`, so
"a chunk of A after B's first chunk" and "a chunk of another stream in this
one" are facts read off the transcript, not guesses.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

#: `finish_reason` values that mean the model finished on its own.
NATURAL_FINISH = frozenset({"stop", "length"})
#: How much of a refused request's body a transcript keeps (for evidence).
BODY_KEEP = 300


@dataclass(frozen=True, slots=True)
class Chunk:
    """One `data:` event of a chat-completion stream."""

    at: float
    id: str | None
    content: str
    finish_reason: str | None = None
    #: jarvis's extension: why the stream ended (`completed`, `superseded`, ...).
    end_reason: str | None = None


@dataclass(slots=True)
class Transcript:
    """What one streamed request received, with the arrival time of every event."""

    label: str
    session: str | None
    prompt: str
    max_tokens: int | None
    sent_at: float
    status: int = 0
    #: `X-Stream-Id` when the server sends it, else the first chunk's `id`.
    stream_id: str | None = None
    #: When the response head arrived (the server is serving the request).
    headers_at: float | None = None
    chunks: list[Chunk] = field(default_factory=list)
    done_at: float | None = None
    ended_at: float | None = None
    #: A transport error (connection reset, body cut short), as text.
    error: str | None = None
    #: No complete response within the deadline.
    hung: bool = False
    #: `data:` lines that were not JSON: a corrupted stream.
    malformed: int = 0
    body: str = ""

    # -- what the events say ---------------------------------------------------

    @property
    def text(self) -> str:
        return "".join(c.content for c in self.chunks)

    @property
    def finish_reason(self) -> str | None:
        return next((c.finish_reason for c in self.chunks if c.finish_reason), None)

    @property
    def end_reason(self) -> str | None:
        return next((c.end_reason for c in reversed(self.chunks) if c.end_reason), None)

    @property
    def terminal(self) -> bool:
        """A chunk with a `finish_reason`, then `data: [DONE]`: the stream ended cleanly."""
        return self.finish_reason is not None and self.done_at is not None

    @property
    def first_chunk_at(self) -> float | None:
        return self.chunks[0].at if self.chunks else None

    @property
    def foreign(self) -> list[Chunk]:
        """Chunks whose `id` is not this stream's: bytes of another stream in this one."""
        return [c for c in self.chunks if c.id is not None and c.id != self.stream_id]

    @property
    def outcome(self) -> str:
        """completed, superseded, error, cut (closed without a terminator), refused or hung."""
        if self.hung:
            return "hung"
        if self.status != 200:
            return "refused" if self.status else "error"
        if not self.terminal:
            return "cut"
        if self.end_reason is not None:
            return self.end_reason  # jarvis says it outright
        finish = self.finish_reason
        if finish in NATURAL_FINISH:
            return "completed"
        return "superseded" if finish == "cancelled" else "error"

    def content_gaps(self) -> list[float]:
        """Seconds between consecutive chunks that carry text (inter-token latency)."""
        times = [c.at for c in self.chunks if c.content]
        return [b - a for a, b in itertools.pairwise(times)]

    def chunks_after(self, when: float) -> list[Chunk]:
        return [c for c in self.chunks if c.at > when]

    def describe(self) -> str:
        """`A chatcmpl-… (session s1)`: how evidence names this stream."""
        where = f" (session {self.session})" if self.session else ""
        return f"{self.label} {self.stream_id or '<no id>'}{where}"

    def problem(self) -> str:
        """Why this stream did not end cleanly, in words ("" when it did)."""
        if self.hung:
            return "no complete response within the deadline"
        if self.status != 200:
            return f"HTTP {self.status or 'error'}: {self.error or self.body[:120]}"
        if self.error is not None:
            return f"connection ended without a terminator ({self.error})"
        if not self.terminal:
            return "the stream ended without a finish_reason chunk and [DONE]"
        return ""

    # -- building it ------------------------------------------------------------

    def absorb(self, data: str, at: float) -> None:
        """Fold one `data:` payload into the transcript."""
        if data == "[DONE]":
            self.done_at = at
            return
        try:
            event = json.loads(data)
        except ValueError:
            self.malformed += 1
            return
        if not isinstance(event, dict):
            self.malformed += 1
            return
        chunk = _chunk(event, at)
        if self.stream_id is None:
            self.stream_id = chunk.id
        self.chunks.append(chunk)


def _chunk(event: dict[str, Any], at: float) -> Chunk:
    content: list[str] = []
    finish: str | None = None
    for choice in event.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and isinstance(delta.get("content"), str):
            content.append(delta["content"])
        if isinstance(choice.get("finish_reason"), str):
            finish = choice["finish_reason"]
    extra = event.get("jarvis")
    end = extra.get("end_reason") if isinstance(extra, dict) else None
    chunk_id = event.get("id")
    return Chunk(
        at,
        chunk_id if isinstance(chunk_id, str) else None,
        "".join(content),
        finish,
        end if isinstance(end, str) else None,
    )


def chat_body(prompt: str, *, model: str, max_tokens: int | None) -> dict[str, object]:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


class ChatClient:
    """Streams chat completions from one server, each request within a hard deadline."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        deadline: float,
        api_key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        #: Sent with every request (the bearer token, if any); the prober reuses them.
        self.headers = headers
        self.base_url = base_url
        self.model = model
        self.deadline = deadline
        self._clock = clock
        # httpx's own timeouts sit just past the hard deadline, so the hard one decides.
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(deadline + 1.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"<ChatClient {self.base_url} model={self.model!r} deadline={self.deadline:g}s>"

    async def stream(
        self,
        prompt: str,
        *,
        session: str | None,
        label: str,
        max_tokens: int | None = None,
        deadline: float | None = None,
        model: str | None = None,
        answered: asyncio.Event | None = None,
    ) -> Transcript:
        """POST one streaming request and read it to the end; never raises for the wire.

        `answered` is set when the response head arrives, so a caller can time a second
        request from the moment the server is serving this one."""
        headers = {"X-Session-Id": session} if session is not None else {}
        body = chat_body(prompt, model=model or self.model, max_tokens=max_tokens)
        t = Transcript(label, session, prompt, max_tokens, sent_at=self._clock())
        try:
            async with asyncio.timeout(deadline or self.deadline):
                await self._read(t, body, headers, answered)
        except (TimeoutError, httpx.TimeoutException):
            t.hung = True
        except httpx.HTTPError as exc:
            t.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        t.ended_at = self._clock()
        return t

    async def _read(
        self,
        t: Transcript,
        body: dict[str, object],
        headers: dict[str, str],
        answered: asyncio.Event | None,
    ) -> None:
        async with self._http.stream(
            "POST", "/v1/chat/completions", json=body, headers=headers
        ) as response:
            t.headers_at = self._clock()
            if answered is not None:
                answered.set()
            t.status = response.status_code
            t.stream_id = response.headers.get("x-stream-id")
            if response.status_code != 200:
                t.body = (await response.aread()).decode("utf-8", "replace")[:BODY_KEEP]
                return
            clock = self._clock
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    t.absorb(line[5:].strip(), clock())

    async def get_json(self, path: str, *, within: float = 2.0) -> tuple[int, Any]:
        """GET `path`: (status, decoded JSON or None); (0, None) if no answer in time."""
        try:
            async with asyncio.timeout(within):
                response = await self._http.get(path)
        except (TimeoutError, httpx.HTTPError):
            return 0, None
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    async def aclose(self) -> None:
        await self._http.aclose()
