"""An async SSE client for streamed chat answers: hard deadlines, arrival times, stream ids.

httpx's timeouts bound one read, not a whole stream, so every request here
runs under `asyncio.timeout(deadline)` as well: a server that trickles bytes
forever, or none at all, still yields a `Transcript` marked `hung` in time.
Events are read with httpx-sse (lines end at CR, LF or CRLF only, as the SSE
spec says) and interpreted by the server's dialect (`jarvis_cli/chatapi`); every
event is stamped when it arrives and keeps its stream id, so "a chunk of A
after B's first chunk" is a fact read off the transcript, not a guess.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from ..chatapi import ChatRequest, Dialect, Piece, SessionIn
from ..chatapi.dialect import OpenAI
from ..chatapi.session import DEFAULT_SESSION_IN

#: How much of a refused request's body a transcript keeps (for evidence).
BODY_KEEP = 300


@dataclass(frozen=True, slots=True)
class Chunk:
    """One event that said something: text, a finish reason, jarvis's end reason."""

    at: float
    id: str | None
    content: str
    finish_reason: str | None = None
    #: The finish reason is a natural one (`stop`, `length`, `end_turn`...).
    natural: bool = False
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
    #: `X-Stream-Id` when the server sends it, else the first id an event carries.
    stream_id: str | None = None
    #: When the response head arrived (the server is serving the request).
    headers_at: float | None = None
    chunks: list[Chunk] = field(default_factory=list)
    #: When the dialect's end marker arrived (`[DONE]`, `message_stop`, a target's `end`).
    done_at: float | None = None
    ended_at: float | None = None
    #: A transport error (connection reset, body cut short), as text.
    error: str | None = None
    #: An error event the server sent in the stream, as text.
    error_event: str | None = None
    #: No complete response within the deadline.
    hung: bool = False
    #: Events the dialect cannot read (data that is not JSON): a corrupted stream.
    malformed: int = 0
    body: str = ""
    #: The base URL that served it (several --url: a session's prompts take turns).
    url: str = ""

    # -- what the events say ---------------------------------------------------

    @property
    def text(self) -> str:
        return "".join(c.content for c in self.chunks)

    @property
    def finish_reason(self) -> str | None:
        return next((c.finish_reason for c in self.chunks if c.finish_reason), None)

    @property
    def natural(self) -> bool:
        """A chunk said the model finished on its own."""
        return any(c.natural for c in self.chunks)

    @property
    def end_reason(self) -> str | None:
        return next((c.end_reason for c in reversed(self.chunks) if c.end_reason), None)

    @property
    def terminal(self) -> bool:
        """jarvis's contract (`--strict`): a finish reason, then the end marker."""
        return self.finish_reason is not None and self.done_at is not None

    @property
    def answered(self) -> bool:
        """The server streamed to an end it chose: no hang, no refusal, no broken
        connection. How it ended (marker, finish reason, plain close) is `ending`."""
        return not self.hung and self.status == 200 and self.error is None

    @property
    def first_chunk_at(self) -> float | None:
        return self.chunks[0].at if self.chunks else None

    @property
    def foreign(self) -> list[Chunk]:
        """Chunks whose id is not this stream's: bytes of another stream in this one."""
        return [c for c in self.chunks if c.id is not None and c.id != self.stream_id]

    @property
    def ending(self) -> str:  # noqa: PLR0911 - one answer per way a stream can end
        """How the stream ended, in words: reported as a note, never a verdict."""
        if self.hung:
            return "no end within the deadline"
        if self.status != 200:
            return f"HTTP {self.status or 'error'}"
        if self.error is not None:
            return "a broken connection"
        if self.error_event is not None:
            return "an error event"
        finish = self.finish_reason
        if self.done_at is not None:
            return f"finish_reason {finish} and the end marker" if finish else "the end marker"
        if finish:
            return f"finish_reason {finish}, then a plain close"
        return "a plain close"

    @property
    def outcome(self) -> str:
        """jarvis's contract (`--strict`): completed, superseded, error, cut, refused, hung."""
        if self.hung:
            return "hung"
        if self.status != 200:
            return "refused" if self.status else "error"
        if not self.terminal:
            return "cut"
        if self.end_reason is not None:
            return self.end_reason  # jarvis says it outright
        if self.natural:
            return "completed"
        return "superseded" if self.finish_reason == "cancelled" else "error"

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

    def problem(self, *, strict: bool = False, cut_ok: bool = False) -> str:
        """Why this stream did not end as it should, in words ("" when it did). Only
        `strict` (jarvis's contract) demands a finish reason and the end marker; `cut_ok`
        takes a broken connection as one more way to end (a superseded stream's)."""
        if self.hung:
            return "no complete response within the deadline"
        if self.status != 200:
            return f"HTTP {self.status or 'error'}: {self.error or self.body[:120]}"
        if self.error is not None and not cut_ok:
            return f"the connection broke mid-stream ({self.error})"
        if strict and not self.terminal:
            return "the stream ended without a finish_reason chunk and [DONE]"
        return ""

    # -- building it ------------------------------------------------------------

    def absorb(self, piece: Piece, at: float) -> None:
        """Fold what one event said into the transcript."""
        if piece.malformed:
            self.malformed += 1
            return
        if piece.error is not None:
            self.error_event = self.error_event or piece.error
        if piece.stream_id is not None and self.stream_id is None:
            self.stream_id = piece.stream_id
        if piece.text or piece.finish or piece.end_reason:
            self.chunks.append(
                Chunk(
                    at,
                    piece.stream_id,
                    piece.text,
                    piece.finish,
                    piece.natural,
                    piece.end_reason,
                )
            )
        if piece.done:
            self.done_at = at


class ChatClient:
    """Streams chat answers from one server (or several replicas), each within a deadline."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        model: str,
        deadline: float,
        dialect: Dialect | None = None,
        session_in: SessionIn = DEFAULT_SESSION_IN,
        api_key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.dialect = dialect or OpenAI()
        self.session_in = session_in
        #: Sent with every request (the API key, if any); the prober reuses them.
        self.headers = self.dialect.auth_headers(api_key)
        self.urls = list(urls)
        self.base_url = self.urls[0]
        self.model = model
        self.deadline = deadline
        self._clock = clock
        self._turns: dict[str | None, int] = {}
        # httpx's own timeouts sit just past the hard deadline, so the hard one decides.
        self._http = httpx.AsyncClient(
            headers=self.headers,
            timeout=httpx.Timeout(deadline + 1.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
            transport=transport,
        )

    def __repr__(self) -> str:
        urls = " ".join(self.urls)
        return (
            f"<ChatClient {urls} {self.dialect.name} model={self.model!r} "
            f"deadline={self.deadline:g}s>"
        )

    def url_for(self, session: str | None) -> str:
        """The URL of this session's next prompt: several replicas take turns per session,
        so a registry that lives inside one process shows as two streams at once."""
        turn = self._turns.get(session, 0)
        self._turns[session] = turn + 1
        return self.urls[turn % len(self.urls)]

    def request(
        self, prompt: str, *, session: str | None, max_tokens: int | None, model: str | None = None
    ) -> ChatRequest:
        return self.dialect.request(
            prompt,
            session=session,
            session_in=self.session_in,
            model=model or self.model,
            max_tokens=max_tokens,
        )

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
        """Send one streaming request and read it to the end; never raises for the wire.

        `answered` is set when the response head arrives, so a caller can time a second
        request from the moment the server is serving this one."""
        request = self.request(prompt, session=session, max_tokens=max_tokens, model=model)
        t = Transcript(label, session, prompt, max_tokens, sent_at=self._clock())
        t.url = self.url_for(session)
        try:
            async with asyncio.timeout(deadline or self.deadline):
                await self._read(t, request, answered)
        except (TimeoutError, httpx.TimeoutException):
            t.hung = True
        except SSEError as exc:
            t.error = f"not an event stream: {exc}"
        except httpx.HTTPError as exc:
            t.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        t.ended_at = self._clock()
        return t

    async def _read(
        self, t: Transcript, request: ChatRequest, answered: asyncio.Event | None
    ) -> None:
        async with self._http.stream(
            request.method,
            t.url + request.path,
            params=request.params,
            json=request.body,
            headers={"Accept": "text/event-stream", **request.all_headers()},
        ) as response:
            t.headers_at = self._clock()
            if answered is not None:
                answered.set()
            t.status = response.status_code
            t.stream_id = response.headers.get("x-stream-id")
            if response.status_code != 200:
                t.body = (await response.aread()).decode("utf-8", "replace")[:BODY_KEEP]
                return
            clock, read = self._clock, self.dialect.read
            async for sse in EventSource(response).aiter_sse():
                if sse.event == "message" and not sse.data:
                    continue  # a blank dispatch (an id alone): says nothing
                piece = read(sse)
                if piece is not None:
                    t.absorb(piece, clock())

    async def get_json(self, path: str, *, within: float = 2.0) -> tuple[int, Any]:
        """GET `path` on the first URL: (status, decoded JSON or None); (0, None) if no
        answer in time."""
        try:
            async with asyncio.timeout(within):
                response = await self._http.get(self.base_url + path)
        except (TimeoutError, httpx.HTTPError):
            return 0, None
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    async def aclose(self) -> None:
        await self._http.aclose()
