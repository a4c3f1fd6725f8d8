"""An async SSE client for streamed chat answers: idle bounds, arrival times, stream ids.

A request is hung when no byte arrives on it for the idle bound (`deadline`)
while none arrives on any other stream of the run either (`activity.py`): a
stream that waits in a server's queue, or trickles, is slow, never hung, and
the scenario's budget bounds it. The body is read byte by byte (every byte is
progress) and decoded as the SSE spec says (`chatapi.sse`: lines end at CR, LF
or CRLF only), then interpreted by the server's dialect (`jarvis_cli/chatapi`);
every event is stamped when it arrives and keeps its stream id, so "a chunk of A
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

from ..chatapi import ChatRequest, Dialect, Piece, SessionIn, SSEDecoder
from ..chatapi.dialect import OpenAI
from ..chatapi.headers import Header, merged
from ..chatapi.session import DEFAULT_SESSION_IN
from .activity import Activity, until_idle
from .results import quoted

#: How much of a refused request's body a transcript keeps (for evidence).
BODY_KEEP = 300
#: What an answer to a streaming request must be: any 2xx carrying this content type.
EVENT_STREAM = "text/event-stream"


def is_success(status: int) -> bool:
    """A 2xx: the server took the request (201 and 202 are answers like 200)."""
    return 200 <= status < 300


def is_event_stream(content_type: str | None) -> bool:
    return (content_type or "").partition(";")[0].strip().lower() == EVENT_STREAM


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
    #: The response's Content-Type ("" before a response head arrived).
    content_type: str = ""
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
    #: No byte on it, nor on any other stream of the run, for the idle bound.
    hung: bool = False
    #: The idle bound that `hung` went past (seconds).
    idle_s: float = 0.0
    #: Events the dialect cannot read (data that is not JSON): a corrupted stream.
    malformed: int = 0
    body: str = ""
    #: The base URL that served it (several --url: a session's prompts take turns).
    url: str = ""
    #: The request as sent: its method and the path (with the query) under `url`.
    method: str = "POST"
    path: str = ""
    #: When its last byte arrived (the response head counts); `sent_at` before any.
    last_byte_at: float | None = None
    #: The response's `Retry-After` header, when it has one (a refusal's).
    retry_after: str | None = None
    #: The SSE id of every event read whole, in order ("" for an event without one, per
    #: the spec the last id seen before it), and when the first of them arrived.
    event_ids: list[str] = field(default_factory=list)
    first_event_at: float | None = None
    #: The client left on purpose (`until` said so) before the server ended the stream.
    left: bool = False

    # -- what the events say ---------------------------------------------------

    @property
    def last_event_id(self) -> str:
        """The id of the last event read whole: what `Last-Event-ID` says on a resume."""
        return self.event_ids[-1] if self.event_ids else ""

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
    def streamed(self) -> bool:
        """The response is a stream: a 2xx carrying text/event-stream."""
        return is_success(self.status) and is_event_stream(self.content_type)

    @property
    def answered(self) -> bool:
        """The server streamed to an end it chose: no hang, no refusal, no broken
        connection. How it ended (marker, finish reason, plain close) is `ending`."""
        return not self.hung and self.streamed and self.error is None

    @property
    def complete(self) -> bool:
        """It said it was done: a natural finish and the dialect's end marker."""
        return self.natural and self.done_at is not None

    @property
    def request_line(self) -> str:
        """`POST http://host:port/v1/chat/completions`: the request, as a message names it."""
        return f"{self.method} {self.url}{self.path}"

    @property
    def first_chunk_at(self) -> float | None:
        return self.chunks[0].at if self.chunks else None

    @property
    def first_text_at(self) -> float | None:
        return next((c.at for c in self.chunks if c.content), None)

    @property
    def foreign(self) -> list[Chunk]:
        """Chunks whose id is not this stream's: bytes of another stream in this one."""
        return [c for c in self.chunks if c.id is not None and c.id != self.stream_id]

    @property
    def ending(self) -> str:  # noqa: PLR0911 - one answer per way a stream can end
        """How the stream ended, in words any dialect reads the same ("a natural finish
        (end_turn) and the end marker"): reported as a note, never a verdict."""
        if self.hung:
            return f"nothing: no byte for {self.idle_s:g} s"
        if not is_success(self.status):
            return f"HTTP {self.status or 'error'}"
        if self.error is not None:
            return "a broken connection"
        if self.error_event is not None:
            return "an error event"
        finish = self.finish_reason
        said = ""
        if finish:
            said = f"a natural finish ({finish})" if self.natural else f"an early stop ({finish})"
        if self.done_at is not None:
            return f"{said} and the end marker" if said else "the end marker"
        if said:
            return f"{said}, then a plain close"
        return "a plain close"

    @property
    def outcome(self) -> str:
        """jarvis's contract (`--strict`): completed, superseded, error, cut, refused, hung."""
        if self.hung:
            return "hung"
        if not is_success(self.status):
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
            return (
                f"hung: no byte for {self.idle_s:g} s, and none on any other stream of the "
                "run meanwhile"
            )
        if not is_success(self.status):
            return f"HTTP {self.status or 'error'}: {self.error or quoted(self.body)}"
        if not self.streamed:
            return (
                f"HTTP {self.status} with Content-Type {self.content_type or 'none'!r}: not "
                f"an event stream: {quoted(self.body)}"
            )
        if self.error is not None and not cut_ok:
            return f"the connection broke mid-stream ({self.error})"
        if strict and not self.terminal and not self.left:
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
    """Streams chat answers from one server (or several replicas); a request ends when
    the server ends it, or when it and every other stream of the run sat idle for the
    idle bound (`deadline`)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        model: str,
        deadline: float,
        dialect: Dialect | None = None,
        session_in: SessionIn = DEFAULT_SESSION_IN,
        api_key: str | None = None,
        headers: Sequence[Header] = (),
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
        max_tokens: int | None = None,
    ) -> None:
        self.dialect = dialect or OpenAI()
        #: `--max-tokens`: no request asks for more (None: each asks what it needs).
        self.max_tokens = max_tokens
        self.session_in = session_in
        #: Sent with every request, streamed, raw or probe: the API key in the dialect's
        #: header, then each --header (which wins over the key for the same name).
        self.headers = merged(self.dialect.auth_headers(api_key), headers)
        self.urls = list(urls)
        self.base_url = self.urls[0]
        self.model = model
        self.deadline = deadline
        self._clock = clock
        #: When any stream of this client last received a byte.
        self.activity = Activity(clock=clock)
        self._turns: dict[str | None, int] = {}
        # Reads have no timeout of their own: a stream waiting in the server's queue
        # while others move is not hung, and `until_idle` decides when one is.
        self._http = httpx.AsyncClient(
            headers=self.headers,
            timeout=httpx.Timeout(deadline + 1.0, read=None, pool=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
            transport=transport,
        )

    def __repr__(self) -> str:
        urls = " ".join(self.urls)
        return (
            f"<ChatClient {urls} {self.dialect.name} model={self.model!r} "
            f"idle bound={self.deadline:g}s>"
        )

    def url_for(self, session: str | None) -> str:
        """The URL of this session's next prompt: several replicas take turns per session,
        so a registry that lives inside one process shows as two streams at once."""
        turn = self._turns.get(session, 0)
        self._turns[session] = turn + 1
        return self.urls[turn % len(self.urls)]

    def capped(self, max_tokens: int | None) -> int | None:
        """What a request that wants `max_tokens` asks for: at most `--max-tokens`."""
        if self.max_tokens is None:
            return max_tokens
        return self.max_tokens if max_tokens is None else min(max_tokens, self.max_tokens)

    def request(
        self, prompt: str, *, session: str | None, max_tokens: int | None, model: str | None = None
    ) -> ChatRequest:
        """The request, with every header the user gave: a raw socket sends it as is."""
        return self.dialect.request(
            prompt,
            session=session,
            session_in=self.session_in,
            model=model or self.model,
            max_tokens=self.capped(max_tokens),
            headers=self.headers,
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
        started: Callable[[Transcript], None] | None = None,
        url: str | None = None,
        until: Callable[[Transcript], bool] | None = None,
    ) -> Transcript:
        """Send one streaming request and read it to the end; never raises for the wire.

        `deadline` (default: the client's) is the idle bound: no byte on this request nor
        on any other for that long, and it is hung. `answered` is set when the response
        head arrives, so a caller can time a second request from the moment the server
        is serving this one. `started` is handed the transcript as soon as it exists, so a
        caller can watch it fill (its chunks, as they arrive) before the request ends.
        `url`: this base URL, not the session's turn. `until`: leave (close the connection)
        as soon as it says so of what has arrived."""
        request = self.request(prompt, session=session, max_tokens=max_tokens, model=model)
        t = Transcript(label, session, prompt, self.capped(max_tokens), sent_at=self._clock())
        t.url = url or self.url_for(session)
        return await self.send(
            request, t, deadline=deadline, answered=answered, until=until, started=started
        )

    async def send(
        self,
        request: ChatRequest,
        t: Transcript,
        *,
        deadline: float | None = None,
        answered: asyncio.Event | None = None,
        until: Callable[[Transcript], bool] | None = None,
        started: Callable[[Transcript], None] | None = None,
    ) -> Transcript:
        """Send `request` to `t.url` and read its event stream into `t`, as `stream` does:
        any request whose answer is a stream (a resume, say), with the same bounds."""
        t.sent_at = self._clock()
        t.method, t.path = request.method, request.target
        t.idle_s = deadline or self.deadline
        if started is not None:
            started(t)
        try:
            hung, _ = await until_idle(
                self._read(t, request, answered, until),
                idle=t.idle_s,
                own_last=lambda: t.last_byte_at or t.sent_at,
                activity=self.activity,
                clock=self._clock,
            )
            t.hung = hung
        except httpx.HTTPError as exc:
            t.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        t.ended_at = self._clock()
        return t

    def _got(self, t: Transcript) -> float:
        """A byte arrived on `t`: progress for it and for the run."""
        now = self._clock()
        t.last_byte_at = now
        self.activity.saw(now)
        return now

    async def _read(
        self,
        t: Transcript,
        request: ChatRequest,
        answered: asyncio.Event | None,
        until: Callable[[Transcript], bool] | None = None,
    ) -> None:
        async with self._http.stream(
            request.method,
            t.url + request.path,
            params=request.params,
            json=request.body or None,
            headers={"Accept": EVENT_STREAM, **request.all_headers()},
        ) as response:
            t.headers_at = self._got(t)
            if answered is not None:
                answered.set()
            t.status = response.status_code
            t.content_type = response.headers.get("content-type", "")
            t.stream_id = response.headers.get("x-stream-id")
            t.retry_after = response.headers.get("retry-after")
            if not t.streamed:
                t.body = await _head_of(response)
                if is_success(t.status):
                    t.error = f"not an event stream: Content-Type {t.content_type or 'none'!r}"
                return
            decoder, read = SSEDecoder(), self.dialect.read
            async for data in response.aiter_bytes():
                at = self._got(t)
                for sse in decoder.feed(data):
                    if sse.event == "message" and not sse.data:
                        continue  # a blank dispatch (an id alone): says nothing
                    t.event_ids.append(sse.id)
                    if t.first_event_at is None:
                        t.first_event_at = at
                    piece = read(sse)
                    if piece is not None:
                        t.absorb(piece, at)
                if until is not None and until(t):
                    t.left = True
                    return  # leaving the block closes the connection mid-body
            decoder.close()

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

    async def call(self, url: str, request: ChatRequest, *, within: float) -> tuple[int, str]:
        """One request that is not a stream (a Stop, say) to `url` + `request.path`, with
        the run's headers and `request`'s: (status, the start of its body); (0, why) when
        no answer came within `within` seconds."""
        try:
            async with asyncio.timeout(within):
                response = await self._http.request(
                    request.method,
                    url + request.path,
                    params=request.params,
                    json=request.body or None,
                    headers=request.all_headers(),
                )
        except (TimeoutError, httpx.HTTPError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            return 0, f"no answer within {within:g} s" if timed_out else type(exc).__name__
        self.activity.saw(self._clock())
        return response.status_code, response.text[:BODY_KEEP]

    async def aclose(self) -> None:
        await self._http.aclose()


async def _head_of(response: httpx.Response) -> str:
    """The start of a body that is not a stream (a refusal, say), for evidence: read no
    further than `BODY_KEEP` bytes, so a server that never ends its body cannot hold us."""
    kept = b""
    async for data in response.aiter_bytes():
        kept += data
        if len(kept) >= BODY_KEEP:
            break
    return kept[:BODY_KEEP].decode("utf-8", "replace")
