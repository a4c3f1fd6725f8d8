"""The HTTP API: an OpenAI-compatible chat endpoint plus health, streams and metrics.

`create_app` builds a FastAPI app around one `ServerContext`. The chat
endpoint validates everything before a stream exists (so bad input is a
clean 4xx, never a half-open stream) and then hands the connection to
`ChatResponse`, an ASGI response whose whole body runs inside one
try/finally, so cleanup runs even when the client leaves before the first byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from . import __version__
from .chat import ChatRequest, parse_chat_request, parse_session
from .config import ServerConfig
from .context import ServerContext
from .exceptions import BadRequest
from .lifecycle import StreamRun
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .sse import ChunkEncoder, CollectingEmitter, SSEEmitter
from .stream import StreamHandle, new_stream_id, new_trace_id
from .types import Emitter, Receive, Scope, Send
from .vocabulary import CancelReason, Event
from .watchdog import LoopWatchdog

CHAT_PATH = "/v1/chat/completions"
INTERNAL_ERROR = BadRequest(
    "internal error", status=500, code="internal_error", error_type="server_error"
)


def error_response(exc: BadRequest, trace: str | None = None) -> JSONResponse:
    headers = {"X-Trace-Id": trace} if trace else None
    return JSONResponse(exc.to_body(), status_code=exc.status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes without reading it all."""
    too_large = BadRequest(
        f"request body is larger than {limit} bytes", status=413, code="body_too_large"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


class ChatResponse(Response):
    """An ASGI response that runs one stream (SSE) or one completion (JSON)."""

    def __init__(
        self, ctx: ServerContext, request: ChatRequest, session: str | None, trace: str
    ) -> None:
        self.ctx = ctx
        self.chat = request
        self.stream_id = new_stream_id()
        self.session = session or f"anon-{self.stream_id}"
        self.trace = trace
        self.status_code = 200
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = self.ctx
        handle = StreamHandle(session=self.session, stream_id=self.stream_id, trace=self.trace)
        created = int(time.time())
        headers = [
            (b"x-stream-id", self.stream_id.encode()),
            (b"x-trace-id", self.trace.encode()),
            (b"x-session-id", self.session.encode()),
        ]
        emitter: Emitter
        if self.chat.stream:
            emitter = SSEEmitter(
                send,
                handle,
                ChunkEncoder(self.stream_id, self.chat.model, created),
                send_timeout=ctx.config.send_timeout,
                on_send_timeout=lambda: ctx.registry.cancel(handle, CancelReason.SEND_TIMEOUT),
                headers=headers,
                watch=ctx.send_watch,
                include_usage=self.chat.include_usage,
            )
        else:
            emitter = CollectingEmitter()
        listener = asyncio.create_task(self._watch_disconnect(receive, handle))
        try:
            await StreamRun(ctx, handle, self.chat, emitter).run()
        finally:
            listener.cancel()
            if isinstance(emitter, SSEEmitter):
                emitter.stop()
        if isinstance(emitter, CollectingEmitter) and not handle.fenced:
            body = emitter.body(self.stream_id, self.chat.model, created, self.chat.prompt_tokens)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        *headers,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

    async def _watch_disconnect(self, receive: Receive, handle: StreamHandle) -> None:
        """Turn the client going away (FIN or RST) into a cancel, at any point of the stream."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.ctx.registry.cancel(handle, CancelReason.CLIENT_DISCONNECTED)
                return


async def accept_chat(ctx: ServerContext, request: Request) -> Response:
    """Validate a chat request and return the response that will run it.

    Never raises: bad input is an OpenAI-style 4xx (logged as `request_rejected`),
    anything unexpected a 500, both before any stream exists.
    """
    trace = new_trace_id()
    raw_session = request.headers.get("x-session-id")
    try:
        session = parse_session(raw_session)
        chat = parse_chat_request(await read_body(request, ctx.config.max_body_bytes))
    except Exception as exc:
        # A BadRequest is the client's; anything else is a bug of ours: a 500, said in the log.
        refusal = exc if isinstance(exc, BadRequest) else INTERNAL_ERROR
        ctx.log.emit(
            Event.REQUEST_REJECTED,
            trace=trace,
            session=raw_session,
            status=refusal.status,
            code=refusal.code,
            message=refusal.message if refusal is exc else f"{type(exc).__name__}: {exc}",
        )
        return error_response(refusal, trace)
    return ChatResponse(ctx, chat, session, trace)


class JarvisAPI(FastAPI):
    """FastAPI, except that the chat stream writes straight to the server's `send`.

    Starlette's middleware stack wraps `send` three times (the error
    middleware, the exception middleware, the route's exception wrapper). At
    one SSE chunk per token that is a large share of a token's CPU
    (benchmarks/server_cpu.py), so `POST /v1/chat/completions` skips the
    stack: `accept_chat` cannot raise, and a stream handles its own errors
    (`StreamRun`). Everything else, this path under another method or mounted
    under a prefix included, goes through FastAPI and its routes.
    """

    def __init__(self, ctx: ServerContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state.ctx = ctx
        self._ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == CHAT_PATH and scope["method"] == "POST":
            response = await accept_chat(self._ctx, Request(scope, receive))
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(config: ServerConfig | None = None, ctx: ServerContext | None = None) -> FastAPI:
    """Build the ASGI app for one server instance."""
    if ctx is None:
        ctx = ServerContext.build(config or ServerConfig())
    watchdog = LoopWatchdog(
        ctx.log,
        threshold_s=ctx.config.watchdog_ms / 1000,
        report_every_s=ctx.config.lag_report_s,
        metrics=ctx.metrics,
        active_streams=ctx.registry.live_count,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Everything alive now lives as long as the server: freeze it out of the
        # collector, so full GC passes (which stall every stream) scan only request
        # garbage. Instagram's well-known trick; see gc.freeze().
        gc.collect()
        gc.freeze()
        watchdog.start()
        try:
            yield
        finally:
            await watchdog.stop()
            await ctx.aclose()

    app = JarvisAPI(
        ctx,
        title="jarvis",
        version=__version__,
        summary="OpenAI-compatible streaming server with a correct stream lifecycle.",
        lifespan=lifespan,
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else f"http_{exc.status_code}"
        response = error_response(BadRequest(str(exc.detail), status=exc.status_code, code=code))
        response.headers.update(exc.headers or {})  # e.g. Allow on a 405
        return response

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(INTERNAL_ERROR)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(BadRequest(f"invalid request: {exc.errors()[:1]}"))

    @app.post(
        CHAT_PATH,
        summary="Chat completion, streamed (SSE) or whole.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "parameters": [
                {
                    "name": "X-Session-Id",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"},
                }
            ],
        },
    )
    async def chat_completions(request: Request) -> Response:
        return await accept_chat(ctx, request)

    @app.get("/healthz", summary="Liveness and responsiveness probe.")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "active_streams": ctx.registry.live_count()}

    @app.get("/v1/streams", summary="Live streams by session (leak checks).")
    async def streams() -> dict[str, Any]:
        sessions = ctx.registry.snapshot()
        return {"active": sum(len(v) for v in sessions.values()), "sessions": sessions}

    @app.get("/v1/models", summary="The model this server answers as.")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": ctx.source.name, "object": "model", "owned_by": "jarvis"}],
        }

    @app.get("/metrics", summary="Prometheus metrics.")
    async def metrics() -> Response:
        return Response(ctx.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    return app
