"""`StreamGuard`: the fix as a library, for any FastAPI or Starlette app.

One guard owns the stream registry, the token batcher, the send watch and
the log of one process. `guard.response(session_id, tokens)` turns any
async iterator of text into an SSE response that runs the whole lifecycle;
`guard.stream(session_id, write)` gives the same lifecycle to a transport
that is not SSE (a WebSocket, custom framing).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import functools
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from ._batcher import TokenBatcher
from ._emitter import SSEEmitter
from ._encoders import Encoding, OpenAIChunks, StreamEnd, id_prefix_of, model_of
from ._followers import Followers
from ._lifecycle import StreamParts, StreamRun
from ._registry import Registry, StreamRegistry
from ._replay import MemoryReplay
from ._resume import (
    STREAM_ID,
    STREAM_NOT_FOUND,
    JournalTail,
    ResumeResponse,
    Tail,
    parse_last_event_id,
)
from ._sendwatch import SendWatch
from ._stdlog import LOGGER_NAME, LoggerSink
from ._stream import StreamHandle, StreamState, new_stream_id, new_trace_id
from ._types import Receive, Scope, Send
from ._watchdog import LoopWatchdog
from .eventlog import EventLog, EventSink
from .exceptions import BadRequest, ConfigError, RegistryUnavailable, UpstreamError
from .settings import GuardSettings, LogFormat, OnBusy
from .vocabulary import CancelReason, EndReason, Event

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ._redis_registry import RedisRegistry
    from ._redis_replay import RedisReplay

#: What a session id may be: anything else is refused, so no client value reaches a
#: log line or a registry key unchecked.
SESSION_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
#: What a stream id may start with (`chatcmpl-`): no `_`, so `anon-<id>` is a session id.
ID_PREFIX = re.compile(r"[A-Za-z0-9.:\-]{0,32}")
#: Where a guard's log goes: a file path (the fast threaded writer), a stdlib logger,
#: or None for the `jarvis.stream` logger.
LogTarget = str | os.PathLike[str] | logging.Logger | None
#: `guard.stream`'s writer: given each batch of text.
Write = Callable[[str], Awaitable[object]]
#: `guard.stream`'s end callback: given how the stream ended, before its session moves on.
OnEnd = Callable[[StreamEnd], Awaitable[object]]
#: `StreamGuard(error_response=...)`: the response to a request refused before any stream
#: exists (`BadRequest`: a bad session id's 400, the registry down's 503), in the app's own
#: error shape. Its status is the one logged in `request_rejected`.
ErrorResponse = Callable[[BadRequest], Response]
#: Where a session id comes from unless `session_from=` says otherwise: the header.
SESSION_HEADER = "X-Session-Id"
#: Where `StreamGuard`'s keyword defaults come from: one definition of each setting.
_DEFAULTS = GuardSettings()


#: The answer to a prompt while the shared registry is down: retry later, nothing started.
REGISTRY_DOWN = BadRequest(
    "the stream registry is unavailable; retry shortly",
    status=503,
    code="registry_unavailable",
    error_type="server_error",
)


def check_session(value: str | None, *, param: str = SESSION_HEADER) -> str | None:
    """A session id as given by a client, validated; None when absent. `param` is where
    the client put it (a header, a body field), as the refusal's `param` names it."""
    if value is None:
        return None
    if not SESSION_ID.fullmatch(value):
        raise BadRequest(
            "the session id must match ^[A-Za-z0-9._:-]{1,128}$",
            param=param,
            code="invalid_session_id",
        )
    return value


def _open_log(log: LogTarget | EventSink, fmt: str) -> tuple[EventSink, EventLog | None]:
    """The sink for `log=`, and the file writer the guard owns (and closes), if any."""
    if log is None:
        return LoggerSink(logging.getLogger(LOGGER_NAME)), None
    if isinstance(log, logging.Logger):
        return LoggerSink(log), None
    if isinstance(log, logging.LoggerAdapter):
        # An adapter's process() replaces `extra`, which carries the event's fields.
        return LoggerSink(log.logger), None
    if isinstance(log, str | os.PathLike):
        writer = EventLog(log, fmt=fmt)  # type: ignore[arg-type]
        # The file outlives any one lifespan (tests enter it many times); what is queued
        # is written when the process exits, or at guard.close().
        atexit.register(writer.close)
        return writer, writer
    if callable(getattr(log, "emit", None)) and callable(getattr(log, "bind", None)):
        return log, None  # an event sink of the package's own (the server's, a test's)
    raise ConfigError(
        f"log= takes a file path, a logging.Logger or None (the {LOGGER_NAME!r} logger), "
        f"not {type(log).__name__}"
    )


def _check_trace(trace: str | None) -> str:
    """A caller's trace id goes into headers and log lines: it must be a plain token."""
    if trace is None:
        return new_trace_id()
    if not SESSION_ID.fullmatch(trace):
        raise ConfigError("trace must match ^[A-Za-z0-9._:-]{1,128}$")
    return trace


def _check_id_prefix(prefix: str) -> str:
    """A stream id's prefix lands in headers, log lines and `anon-<id>` sessions: it must
    keep the id a plain token, and an anonymous session a valid session id."""
    if not ID_PREFIX.fullmatch(prefix):
        raise ConfigError(f"id_prefix must match ^[A-Za-z0-9.:-]{{0,32}}$, not {prefix!r}")
    return prefix


def _redis_registry() -> type[RedisRegistry]:
    """`RedisRegistry`, imported on first use: redis is the `fleet` extra, and a guard in
    one process never needs it; without it, say which extra to install."""
    try:
        from ._redis_registry import RedisRegistry
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "redis":
            raise
        raise ConfigError(
            "registry='redis://...' needs the redis client, the fleet extra: "
            "pip install 'jarvis-streamkit[fleet]'"
        ) from None
    return RedisRegistry


def _redis_replay() -> type[RedisReplay]:
    """`RedisReplay`, imported with the registry's redis client (checked there first)."""
    from ._redis_replay import RedisReplay

    return RedisReplay


class StreamGuard:
    """One stream per session, for every streaming route of an app.

    A new prompt in a session cancels the session's live stream, waits for
    its cleanup (at most `cancel_wait` seconds, outside any lock), fences it if
    it overran, and only then starts. Tokens are batched with a debounce of
    `flush_ms` that never blocks the loop (a batch of `flush_bytes` goes at
    once; `flush_ms=0` streams token by token). A write stuck for
    `send_timeout` seconds ends its stream. Every step is logged with the
    vocabulary of `jarvis.EVENTS`.

    Every keyword but `log` and `error_response` is a field of `GuardSettings`, which
    holds its default and its rule; `StreamGuard.from_settings(settings)` takes one whole.
    `error_response` builds the response to a refused request (`reject`) in the app's
    own error shape; by default it is an OpenAI-style error body.

    `on_busy` says what a prompt does while its session streams: `"supersede"` (the
    above), `"reject"` (a 409 with `Retry-After`, `SessionBusy`; the running answer goes
    on untouched) or `"queue"` (wait, first come first served, at most `queue_wait`
    seconds, for the running answer to end; then start, or a 409). `ping` is the silence
    (seconds) after which a stream sends an SSE comment, so that a proxy's idle timeout
    does not cut a slow answer; 0 never pings.
    """

    def __init__(
        self,
        *,
        cancel_wait: float = _DEFAULTS.cancel_wait,
        flush_ms: float = _DEFAULTS.flush_ms,
        flush_bytes: int = _DEFAULTS.flush_bytes,
        send_timeout: float = _DEFAULTS.send_timeout,
        shutdown_timeout: float = _DEFAULTS.shutdown_timeout,
        log: LogTarget = None,
        error_response: ErrorResponse | None = None,
        log_format: LogFormat = _DEFAULTS.log_format,
        watchdog_ms: float = _DEFAULTS.watchdog_ms,
        lag_report_s: float = _DEFAULTS.lag_report_s,
        registry: str | None = _DEFAULTS.registry,
        resume_ttl: float = _DEFAULTS.resume_ttl,
        resume_max_mb: float = _DEFAULTS.resume_max_mb,
        detach_grace: float = _DEFAULTS.detach_grace,
        on_busy: OnBusy = _DEFAULTS.on_busy,
        queue_wait: float = _DEFAULTS.queue_wait,
        ping: float = _DEFAULTS.ping,
    ) -> None:
        # Checked once, by the settings object: the same message as `jarvis serve` gives.
        self._settings = GuardSettings(
            cancel_wait=cancel_wait,
            flush_ms=flush_ms,
            flush_bytes=flush_bytes,
            send_timeout=send_timeout,
            shutdown_timeout=shutdown_timeout,
            log_format=log_format,
            watchdog_ms=watchdog_ms,
            lag_report_s=lag_report_s,
            registry=registry,
            resume_ttl=resume_ttl,
            resume_max_mb=resume_max_mb,
            detach_grace=detach_grace,
            on_busy=on_busy,
            queue_wait=queue_wait,
            ping=ping,
        )
        if error_response is not None and not callable(error_response):
            raise ConfigError("error_response= takes a callable: BadRequest -> Response")
        self._error_response = error_response
        sink, self._owned_log = _open_log(log, log_format)
        from ._metrics import Metrics  # prometheus_client: loaded with the first guard

        metrics = Metrics()
        self._metrics = metrics
        shared: Registry
        if registry is None:
            shared = StreamRegistry(
                sink,
                cancel_wait=cancel_wait,
                metrics=metrics,
                on_busy=on_busy,
                queue_wait=queue_wait,
            )
        else:
            shared = _redis_registry()(
                sink,
                registry,
                cancel_wait=cancel_wait,
                metrics=metrics,
                on_busy=on_busy,
                queue_wait=queue_wait,
            )
        self._parts = StreamParts(
            log=sink,
            metrics=metrics,
            registry=shared,
            batcher=TokenBatcher(sink, flush_ms=flush_ms, flush_bytes=flush_bytes, metrics=metrics),
            cancel_wait=cancel_wait,
            ping=ping,
        )
        self._send_watch = SendWatch(send_timeout)
        #: Where streams' events are kept for a resume; None: resume is off.
        self._replay: MemoryReplay | None = None
        kept = int(resume_max_mb * 2**20)
        if resume_ttl > 0 and registry is None:
            self._replay = MemoryReplay(resume_ttl, kept)
        elif resume_ttl > 0 and registry is not None:
            self._replay = _redis_replay()(resume_ttl, registry, log=sink, max_bytes=kept)
        if self._replay is not None:
            metrics.watch_replay(self._replay)
        #: The lifecycle each stream runs. A seam: `jarvis.faults` sets a variant of
        #: `StreamRun` here (before the guard serves) to reproduce the original server's bugs.
        self.run_class: type[StreamRun] = StreamRun
        self._watchdog = LoopWatchdog(
            sink,
            threshold_s=watchdog_ms / 1000,
            report_every_s=lag_report_s,
            metrics=metrics,
            active_streams=self.live_count,
            flushing=lambda: self._parts.batcher.in_flight(),  # noqa: PLW0108 - a fault may swap the batcher
        )

    @classmethod
    def from_settings(
        cls,
        settings: GuardSettings,
        *,
        log: LogTarget = None,
        error_response: ErrorResponse | None = None,
    ) -> StreamGuard:
        """A guard with every setting of `settings` (`ServerConfig.guard`, say)."""
        return cls(log=log, error_response=error_response, **dataclasses.asdict(settings))

    def __repr__(self) -> str:
        return f"<StreamGuard live={self.live_count()} cancel_wait={self.cancel_wait}s>"

    @property
    def parts(self) -> StreamParts:
        """What every stream of this guard shares: log, metrics, registry, batcher.

        A seam, like `run_class`: `jarvis.faults` replaces the registry or the batcher
        here with a variant; tests read the registry's view of live streams.
        """
        return self._parts

    @property
    def settings(self) -> GuardSettings:
        """The settings this guard was built with."""
        return self._settings

    @property
    def cancel_wait(self) -> float:
        return self._settings.cancel_wait

    @property
    def send_timeout(self) -> float:
        return self._settings.send_timeout

    @property
    def shutdown_timeout(self) -> float:
        return self._settings.shutdown_timeout

    # -- the two ways in ------------------------------------------------------------

    def response(
        self,
        session_id: str | None,
        tokens: AsyncIterator[str],
        *,
        encode: Encoding | None = None,
        headers: Mapping[str, str] | None = None,
        trace: str | None = None,
        prompt: str | None = None,
        session_from: str = SESSION_HEADER,
    ) -> Response:
        """An ASGI response that streams `tokens` as the session's one stream.

        `session_id` None gives the stream a session of its own; an invalid one
        is refused with a 400 (`reject`: an OpenAI-style error body unless the guard
        has an `error_response`), logged as `request_rejected`; `session_from` is
        where the client put it, named as the error's `param` (`"X-Session-Id"`, or
        a body field such as `"metadata.session_id"`). `encode` is the wire format,
        by default OpenAI `chat.completion.chunk` (see `OpenAIChunks`, `PlainText`,
        `AnthropicEvents`). `prompt` is used only for its length in the log.
        """
        trace = _check_trace(trace)
        try:
            session = check_session(session_id, param=session_from)
        except BadRequest as exc:
            return self.reject(exc, trace=trace, session=session_id)
        if self._parts.registry.unavailable():
            return self.reject(REGISTRY_DOWN, trace=trace, session=session_id)
        return _GuardedResponse(
            self,
            session,
            tokens,
            OpenAIChunks() if encode is None else encode,
            headers or {},
            trace,
            len(prompt) if prompt is not None else 0,
        )

    def stream(
        self,
        session_id: str | None,
        write: Write,
        *,
        end: OnEnd | None = None,
        trace: str | None = None,
        model: str = "",
        prompt: str | None = None,
        id_prefix: str = "",
        session_from: str = SESSION_HEADER,
    ) -> GuardedStream:
        """The lifecycle for a transport that is not SSE: `async with guard.stream(...) as s:`.

        Entering registers the stream (cancelling and waiting for the session's
        older one); `await s.send(token)` batches tokens and hands each batch
        to `write`; `s.cancelled` turns true once a newer prompt, a disconnect
        or shutdown stops the stream (check it every iteration); leaving runs
        the whole cleanup, calling `end` with how the stream ended before the
        session's next stream may start. Raises `BadRequest` for an invalid id (its
        `param` is `session_from`), and on entry `SessionBusy` (a 409, logged as
        `request_rejected`) when the session is busy and the guard's `on_busy` refuses.

        `model` is logged in `stream_start` (left out when empty); the stream id is
        `id_prefix` (say `chatcmpl-`, for an OpenAI completion) and 24 hex digits.
        """
        return GuardedStream(
            self,
            check_session(session_id, param=session_from),
            write,
            end,
            _check_trace(trace),
            model,
            len(prompt) if prompt is not None else 0,
            _check_id_prefix(id_prefix),
        )

    # -- resume and stop ------------------------------------------------------------

    @property
    def resume_ttl(self) -> float:
        """Seconds a stream's events are kept after it ends; 0: resume is off."""
        return self._settings.resume_ttl

    def resume(
        self,
        session_id: str | None,
        stream_id: str,
        last_event_id: str | int | None = None,
        *,
        session_from: str = SESSION_HEADER,
    ) -> Response:
        """`GET /v1/streams/{stream_id}`: the stream's events after `last_event_id` (the
        client's `Last-Event-ID` header; None: from the start), then the stream live
        until its end; a stream that ended less than `resume_ttl` ago is replayed and the
        response ends. Several readers may follow one stream.

        Only the stream's own session finds it: another session, an unknown or expired
        id, and every id while resume is off, get a 404 (`stream_not_found`); a garbled
        `Last-Event-ID` or session id a 400. Refusals go through `reject`.
        """
        try:
            session = check_session(session_id, param=session_from)
            after = parse_last_event_id(last_event_id)
        except BadRequest as exc:
            return self.reject(exc, session=session_id)
        if session is None or self._replay is None or not STREAM_ID.fullmatch(stream_id):
            return self.reject(STREAM_NOT_FOUND, session=session_id)
        return ResumeResponse(
            self._tail,
            session,
            stream_id,
            after,
            log=self._parts.log,
            send_timeout=self.send_timeout,
            not_found=lambda: self.reject(STREAM_NOT_FOUND, session=session),
            ttl=self.resume_ttl,
        )

    async def _tail(self, session: str, stream_id: str, after: int) -> Tail | None:
        """A reader of the stream from after event `after`, if `session` may have one."""
        if self._replay is None:
            return None
        journal = self._replay.find(stream_id)
        if journal is not None:
            return JournalTail(journal, after) if journal.session == session else None
        return await self._replay.remote_tail(session, stream_id, after)

    async def stop(self, session_id: str | None, stream_id: str) -> bool:
        """Stop the session's stream `stream_id` now (`POST /v1/streams/{id}/cancel`): it
        ends `stopped`, its readers get its terminal event. True if it was told to stop;
        False if it had already ended (and is still known: resume on, within `resume_ttl`).

        Raises `BadRequest`: a 404 (`stream_not_found`) for an unknown stream or another
        session's (one answer for both), a 400 for a garbled session id. Logged as
        `stream_stop_requested`.
        """
        session = check_session(session_id)
        if session is None or not STREAM_ID.fullmatch(stream_id):
            raise STREAM_NOT_FOUND
        registry = self._parts.registry
        handle = registry.active(session)
        where = ""
        if handle is not None and handle.stream_id == stream_id:
            stopped = registry.cancel(handle, CancelReason.STOP_REQUESTED)
            where = "local" if stopped else "ended"
        elif self._replay is not None and (journal := self._replay.find(stream_id)) is not None:
            where = "ended" if journal.session == session and journal.ended else ""
        elif await self._stop_remote(session, stream_id):
            where = "remote"
        elif self._replay is not None:
            # Known to the fleet's store but no longer its session's stream: it has ended.
            known = await self._replay.remote_status(session, stream_id)
            where = "ended" if known is not None else ""
        if not where:
            raise STREAM_NOT_FOUND
        self._parts.log.emit(
            Event.STREAM_STOP_REQUESTED, session=session, stream_id=stream_id, where=where
        )
        return where != "ended"

    async def _stop_remote(self, session: str, stream_id: str) -> bool:
        """In a fleet: tell the process running `stream_id` to stop it, if it is the
        session's registered stream."""
        try:
            return await self._parts.registry.stop_remote(session, stream_id)
        except Exception as exc:  # the registry does not answer (redis's errors, OSError)
            raise REGISTRY_DOWN from exc

    # -- what an app wires in -------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """`FastAPI(lifespan=guard.lifespan)`: the loop watchdog while the app runs,
        and on shutdown every live stream ended (`reason=shutdown`, bounded)."""
        await self._parts.registry.start()
        if self._replay is not None:
            await self._replay.start()
        self._watchdog.start()
        try:
            yield
        finally:
            try:
                await self.shutdown()
            finally:
                await self._watchdog.stop()
                if self._replay is not None:
                    await self._replay.stop()
                await self._parts.registry.stop()

    async def shutdown(self, wait_s: float | None = None) -> int:
        """End every live stream with `reason=shutdown`; wait (at most `wait_s`, by default
        half the shutdown timeout); return how many are still open."""
        wait = self.shutdown_timeout / 2 if wait_s is None else wait_s
        return await self._parts.registry.shutdown(wait)

    def close(self) -> None:
        """Close the log file the guard opened for `log=<path>`, writing what is queued
        (done at exit anyway; a lifespan leaves it open, as the guard may serve again)."""
        if self._owned_log is not None:
            self._owned_log.close()

    def reject(
        self,
        exc: BadRequest,
        *,
        trace: str | None = None,
        session: str | None = None,
        detail: str | None = None,
    ) -> Response:
        """The error response for a request refused before any stream exists.

        The guard's `error_response(exc)` if it has one, else `exc.to_body()` (OpenAI's
        error shape) with `exc.status`; either carries `X-Trace-Id` unless it set its
        own. Logged as `request_rejected` with the status actually sent; `detail`
        replaces the message in the log only (say, the exception behind a 500 the
        client sees as "internal error").
        """
        trace = trace or new_trace_id()
        if self._error_response is None:
            response: Response = JSONResponse(exc.to_body(), status_code=exc.status)
        else:
            response = self._error_response(exc)
        for name, value in exc.headers.items():  # a 409's Retry-After
            response.headers.setdefault(name, value)
        response.headers.setdefault("X-Trace-Id", trace)
        self._parts.log.emit(
            Event.REQUEST_REJECTED,
            trace=trace,
            session=session,
            status=response.status_code,
            code=exc.code,
            message=exc.message if detail is None else detail,
        )
        self._metrics.refused.labels(exc.code).inc()
        return response

    # -- what an app may show -------------------------------------------------------

    def live_count(self) -> int:
        """Streams registered or waiting and not yet cleaned up (safe from any thread)."""
        return self._parts.registry.live_count()

    def snapshot(self) -> dict[str, list[dict[str, object]]]:
        """Live streams by session: id, trace, state, generation, fenced, age."""
        return self._parts.registry.snapshot()

    @property
    def prometheus(self) -> CollectorRegistry:
        """The guard's Prometheus metrics (streams, cancels, waits, flushes)."""
        return self._metrics.registry


class _GuardedResponse(Response):
    """The SSE response of one stream; its whole body runs inside the lifecycle's `finally`."""

    def __init__(
        self,
        guard: StreamGuard,
        session: str | None,
        tokens: AsyncIterator[str],
        encode: Encoding,
        headers: Mapping[str, str],
        trace: str,
        prompt_chars: int,
    ) -> None:
        self.guard = guard
        self.stream_id = new_stream_id(_check_id_prefix(id_prefix_of(encode)))
        self.session = session or f"anon-{self.stream_id}"
        self.trace = trace
        self.tokens = tokens
        self.encode = encode
        self.prompt_chars = prompt_chars
        self.status_code = 200
        self.background = None
        # Response.headers (and set_cookie) edit raw_headers; they are sent at start.
        self.raw_headers = [
            (b"x-stream-id", self.stream_id.encode()),
            (b"x-trace-id", self.trace.encode()),
            (b"x-session-id", self.session.encode()),
            *_latin1(headers.items()),
        ]
        if guard._replay is not None:  # resume on: how long the events stay after the end
            self.raw_headers.append((b"x-resume-ttl", f"{guard.resume_ttl:g}".encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = self.guard
        parts = guard.parts
        handle = StreamHandle(session=self.session, stream_id=self.stream_id, trace=self.trace)
        encoder = self.encode(self.stream_id)
        replay, journal, followers = guard._replay, None, None
        if replay is not None:
            journal = replay.open(handle)
            followers = Followers(
                handle,
                grace=guard.settings.detach_grace,
                cancel=functools.partial(
                    parts.registry.cancel, handle, CancelReason.CLIENT_DISCONNECTED
                ),
                log=parts.log,
                remote=replay.following,
            )
            journal.followers = followers
        emitter = SSEEmitter(
            send,
            handle,
            encoder,
            send_timeout=guard.send_timeout,
            on_send_timeout=lambda: parts.registry.cancel(handle, CancelReason.SEND_TIMEOUT),
            headers=self.raw_headers,
            watch=guard._send_watch,
            journal=journal,
            on_detach=None if followers is None else followers.leave,
        )
        run = guard.run_class(
            parts, handle, emitter, model=model_of(self.encode), prompt_chars=self.prompt_chars
        )
        gone: Callable[[], object]
        if journal is None:
            gone = functools.partial(
                parts.registry.cancel, handle, CancelReason.CLIENT_DISCONNECTED
            )
        else:
            gone = emitter.detach  # resume on: the answer runs on for a reattach
        listener = asyncio.create_task(watch_disconnect(receive, gone))
        refusal: Response | None = None
        try:
            refusal = await self._admit(handle)
            if refusal is None:
                await run.run(self.tokens)
        finally:
            listener.cancel()
            emitter.stop()
            if journal is not None and replay is not None:
                if journal.followers is not None:
                    journal.followers.close()
                if refusal is None:
                    replay.close(journal)
                else:  # refused before any event: its client never saw its stream id
                    replay.forget(journal)
        if refusal is not None:
            await _close_tokens(self.tokens)
            await refusal(scope, receive, send)
            return
        if self.background is not None:
            await self.background()

    async def _admit(self, handle: StreamHandle) -> Response | None:
        """The session's `on_busy` policy, before the prompt becomes a stream: None to go
        on, or the refusal to send instead (a 409; a 503 if the registry went down)."""
        try:
            refused: BadRequest | None = await self.guard.parts.registry.admit(handle)
        except RegistryUnavailable:
            refused = REGISTRY_DOWN
        if refused is None:
            return None
        return self.guard.reject(refused, trace=self.trace, session=self.session)


async def _close_tokens(tokens: AsyncIterator[str]) -> None:
    """A refused prompt's token source never runs: close it, or a generator warns."""
    aclose = getattr(tokens, "aclose", None)
    if aclose is not None:
        await aclose()


def _latin1(items: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items]


async def watch_disconnect(receive: Receive, on_gone: Callable[[], object]) -> None:
    """Turn the client going away (FIN or RST) into `on_gone()`, at any point of a stream."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            on_gone()
            return


class _WriterEmitter:
    """`guard.stream`'s emitter: batches go to the caller's `write`, each bounded.

    A write that times out or raises (the transport is gone) ends the stream:
    the stream is cancelled, the batch dropped, and nothing is written after it,
    not even `end`, so a dead transport costs one bounded wait, not three.
    """

    def __init__(
        self,
        write: Write,
        on_end: OnEnd | None,
        handle: StreamHandle,
        registry: Registry,
        send_timeout: float,
    ) -> None:
        self._write = write
        self._on_end = on_end
        self._handle = handle
        self._registry = registry
        self._send_timeout = send_timeout
        self.closed = False

    async def start(self) -> None:
        return None

    async def token(self, text: str) -> bool:
        return await self.tokens(text, 1)

    async def tokens(self, text: str, count: int) -> bool:
        if self.closed or self._handle.fenced:
            return False
        return await self._call(self._write, text)

    async def finish(self, end: StreamEnd) -> None:
        if self._on_end is None or self.closed or self._handle.fenced:
            return
        await self._call(self._on_end, end)

    def silent_for(self, now: float) -> float | None:
        return None  # the caller's transport: its keepalive, if any, is its own

    async def ping(self) -> bool:
        return False

    async def _call(self, write: Callable[[Any], Awaitable[object]], value: object) -> bool:
        try:
            async with asyncio.timeout(self._send_timeout):
                await write(value)
        except TimeoutError:
            reason = CancelReason.SEND_TIMEOUT
        except Exception:  # the transport failed: the client is gone
            reason = CancelReason.CLIENT_DISCONNECTED
        else:
            return True
        self.closed = True
        self._registry.cancel(self._handle, reason)
        return False


class GuardedStream:
    """One stream of `guard.stream(...)`: `async with` it, `send` tokens, check `cancelled`."""

    def __init__(
        self,
        guard: StreamGuard,
        session: str | None,
        write: Write,
        on_end: OnEnd | None,
        trace: str,
        model: str,
        prompt_chars: int,
        id_prefix: str = "",
    ) -> None:
        self.id = new_stream_id(id_prefix)
        self.session = session or f"anon-{self.id}"
        self.trace = trace
        #: How the stream ended; set once the `async with` block has been left.
        self.end: StreamEnd | None = None
        self._guard = guard
        self._write = write
        self._on_end = on_end
        self._model = model
        self._prompt_chars = prompt_chars
        self._handle: StreamHandle | None = None
        self._run: StreamRun | None = None
        self._add: Callable[[str], Awaitable[None]] | None = None

    def __repr__(self) -> str:
        return f"<GuardedStream {self.id} session={self.session!r} {self._handle!r}>"

    @property
    def cancelled(self) -> bool:
        """True once the stream may emit nothing more: superseded, disconnected, shut down,
        or its block has been left."""
        h, run = self._handle, self._run
        if h is None or run is None or self._add is None:
            return True
        return run.stop_requested() or h.fenced or h.state >= StreamState.STOPPING

    @property
    def fenced(self) -> bool:
        """True when a newer stream went ahead without this one's cleanup (it overran)."""
        return self._handle is not None and self._handle.fenced

    async def send(self, text: str) -> bool:
        """Queue one token for the batcher; False (and nothing sent) once `cancelled`."""
        if self.cancelled:
            return False
        assert self._handle is not None
        assert self._add is not None
        self._handle.tokens += 1
        await self._add(text)
        return True

    def disconnect(self) -> None:
        """The client went away: stop the stream (`reason=disconnected`)."""
        if self._handle is not None:
            self._guard.parts.registry.cancel(self._handle, CancelReason.CLIENT_DISCONNECTED)

    async def __aenter__(self) -> GuardedStream:
        guard = self._guard
        parts = guard.parts
        if parts.registry.unavailable():
            raise RegistryUnavailable("the stream registry is unavailable; retry shortly")
        handle = StreamHandle(session=self.session, stream_id=self.id, trace=self.trace)
        self._handle = handle  # `disconnect()` reaches a prompt that waits in the queue
        refused = await parts.registry.admit(handle)
        if refused is not None:
            guard.parts.log.emit(
                Event.REQUEST_REJECTED,
                trace=self.trace,
                session=self.session,
                status=refused.status,
                code=refused.code,
                message=refused.message,
            )
            parts.metrics.refused.labels(refused.code).inc()
            self._handle = None
            raise refused
        emitter = _WriterEmitter(
            self._write, self._on_end, handle, parts.registry, guard.send_timeout
        )
        run = guard.run_class(
            parts, handle, emitter, model=self._model, prompt_chars=self._prompt_chars
        )
        self._run = run
        try:
            if await run.open():
                self._add = parts.batcher.adder(self.id)
        except BaseException:
            await run.close(EndReason.SHUTDOWN)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        run, handle = self._run, self._handle
        assert run is not None
        assert handle is not None
        won = self._add is not None
        self._add = None  # from here on `send` is refused: the block is over
        if not won or run.stop_requested():
            reason = run.cancelled_reason()
        elif handle.fenced:
            reason = EndReason.SUPERSEDED
        elif isinstance(exc, asyncio.CancelledError):  # the caller gave up on the stream
            reason = run.abandoned()
        elif isinstance(exc, UpstreamError):  # the app says its upstream failed
            run.error = str(exc)
            reason = EndReason.ERROR
            status = exc.status or 0
            run.parts.log.emit(
                Event.UPSTREAM_ERROR, trace=handle.trace, status=status, message=run.error
            )
        elif exc is not None:  # the app's own code failed: not the upstream's doing
            run.error = f"{type(exc).__name__}: {exc}"
            reason = EndReason.ERROR
            run.parts.log.emit(Event.CALLER_ERROR, trace=handle.trace, message=run.error)
        else:
            reason = EndReason.COMPLETED
        try:
            if reason in (EndReason.COMPLETED, EndReason.ERROR):
                await self._guard.parts.batcher.flush_on_end(self.id)
        finally:
            await run.close(reason)
            self.end = StreamEnd(reason, handle.tokens, run.error)
