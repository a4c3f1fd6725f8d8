"""The HTTP API: an OpenAI-compatible chat endpoint plus health, streams, metrics and the
browser chat page at `/`.

`create_app` builds a FastAPI app around one `ServerContext`. The chat
endpoint validates everything before a stream exists (so bad input is a
clean 4xx, never a half-open stream) and then hands the tokens to the
guard: `guard.response` for a stream, `guard.stream` for a whole completion.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from .. import __version__
from .._encoders import OpenAIChunks, finish_reason_for
from .._guard import REGISTRY_DOWN, GuardedStream, check_session, watch_disconnect
from .._stream import new_trace_id
from .._types import Receive, Scope, Send
from ..config import ServerConfig
from ..exceptions import BadRequest, RegistryUnavailable, SessionBusy
from .chat import ChatRequest, parse_chat_request
from .context import ServerContext
from .page import add_page_routes

CHAT_PATH = "/v1/chat/completions"
INTERNAL_ERROR = BadRequest(
    "internal error", status=500, code="internal_error", error_type="server_error"
)


def is_loopback(request: Request) -> bool:
    """Whether the client is on this machine (127.0.0.0/8, ::1): a TCP peer, not a header."""
    client = request.client
    if client is None:
        return False
    try:
        return ipaddress.ip_address(client.host).is_loopback
    except ValueError:
        return False


def error_response(exc: BadRequest, trace: str | None = None) -> JSONResponse:
    headers = {**exc.headers, **({"X-Trace-Id": trace} if trace else {})}
    return JSONResponse(exc.to_body(), status_code=exc.status, headers=headers or None)


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


class _ModelName:
    """The model a response names: the request's, until the upstream names its own."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self) -> str:
        return self.name

    def seen(self, name: str) -> None:
        self.name = name


async def accept_chat(ctx: ServerContext, request: Request) -> Response:
    """Validate a chat request and return the response that will run it.

    Never raises: bad input is an OpenAI-style 4xx (logged as `request_rejected`),
    anything unexpected a 500, both before any stream exists.
    """
    trace = new_trace_id()
    raw_session = request.headers.get("x-session-id")
    try:
        session = check_session(raw_session)
        chat = parse_chat_request(await read_body(request, ctx.config.max_body_bytes))
    except Exception as exc:
        # A BadRequest is the client's; anything else is a bug of ours: a 500, said in the log.
        if isinstance(exc, BadRequest):
            return ctx.guard.reject(exc, trace=trace, session=raw_session)
        return ctx.guard.reject(
            INTERNAL_ERROR, trace=trace, session=raw_session, detail=f"{type(exc).__name__}: {exc}"
        )
    model = _ModelName(chat.model)
    if not chat.stream:
        return CompletionResponse(ctx, chat, session, trace, model)
    encode = OpenAIChunks(
        model,
        include_usage=chat.include_usage,
        prompt_tokens=chat.prompt_tokens,
        max_tokens=chat.max_tokens,
    )
    tokens = ctx.source.stream(chat, model.seen)
    return ctx.guard.response(session, tokens, encode=encode, trace=trace, prompt=chat.prompt)


class CompletionResponse(Response):
    """`stream: false`: the same lifecycle through `guard.stream`, the text sent whole."""

    def __init__(
        self,
        ctx: ServerContext,
        chat: ChatRequest,
        session: str | None,
        trace: str,
        model: _ModelName,
    ) -> None:
        self.ctx = ctx
        self.chat = chat
        self.session = session
        self.trace = trace
        self.model = model
        self.status_code = 200
        self.background = None
        self.raw_headers = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx, chat = self.ctx, self.chat
        parts: list[str] = []

        async def write(text: str) -> None:
            parts.append(text)

        stream = ctx.guard.stream(
            self.session,
            write,
            trace=self.trace,
            model=chat.model,
            prompt=chat.prompt,
            id_prefix=OpenAIChunks.id_prefix,  # the body is an OpenAI `chat.completion`
        )
        listener = asyncio.create_task(watch_disconnect(receive, stream.disconnect))
        refused: Response | None = None
        try:
            # A source that fails is recorded by the stream (`reason=error`, the message
            # in the body); it is not a 500.
            with contextlib.suppress(Exception):
                source = contextlib.aclosing(ctx.source.stream(chat, self.model.seen))
                try:
                    async with stream, source as tokens:
                        if not stream.cancelled:  # lost the session's race: never start it
                            async for token in tokens:
                                if not await stream.send(token):
                                    break
                except SessionBusy as exc:  # the guard logged its request_rejected
                    refused = error_response(exc, self.trace)
                except RegistryUnavailable:
                    refused = ctx.guard.reject(
                        REGISTRY_DOWN, trace=self.trace, session=self.session
                    )
        finally:
            listener.cancel()
        if refused is not None:
            await refused(scope, receive, send)
            return
        if stream.fenced or stream.end is None:
            return  # superseded past the cancel wait: not one byte
        body = _completion_body(stream, chat, "".join(parts), self.model())
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-stream-id", stream.id.encode()),
            (b"x-trace-id", stream.trace.encode()),
            (b"x-session-id", stream.session.encode()),
            *self.raw_headers,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _completion_body(stream: GuardedStream, chat: ChatRequest, text: str, model: str) -> bytes:
    end = stream.end
    assert end is not None
    limit = chat.max_tokens
    prompt = chat.prompt_tokens
    payload: dict[str, Any] = {
        "id": stream.id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason_for(
                    end.reason, hit_max_tokens=limit is not None and end.tokens >= limit
                ),
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": end.tokens,
            "total_tokens": prompt + end.tokens,
        },
        "jarvis": {"end_reason": end.reason.value},
    }
    if end.error is not None:
        payload["error"] = {"message": end.error, "type": "upstream_error"}
    return json.dumps(payload, separators=(",", ":")).encode()


class _JarvisAPI(FastAPI):
    """FastAPI, with a direct path for the chat stream while no middleware is added.

    Starlette's stack wraps `send` three times (the error middleware, the
    exception middleware, the route's exception wrapper): at one SSE chunk per
    token that is about a tenth of the server's CPU (docs/benchmarks.md). So
    while `user_middleware` is empty, `POST /v1/chat/completions` is served
    directly: `accept_chat` cannot raise, and a stream handles its own errors.
    Once any middleware is added (CORS, auth, `@app.middleware`), every
    request, this one included, goes through the stack; a test holds it.
    """

    def __init__(self, ctx: ServerContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            not self.user_middleware
            and scope["type"] == "http"
            and scope["path"] == CHAT_PATH
            and scope["method"] == "POST"
        ):
            response = await accept_chat(self._ctx, Request(scope, receive))
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(config: ServerConfig | None = None, ctx: ServerContext | None = None) -> FastAPI:
    """Build the ASGI app for one server instance."""
    if ctx is None:
        ctx = ServerContext.build(config or ServerConfig())
    guard = ctx.guard

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Everything alive now lives as long as the server: freeze it out of the
        # collector, so full GC passes (which stall every stream) scan only request
        # garbage. Instagram's well-known trick; see gc.freeze().
        gc.collect()
        gc.freeze()
        try:
            async with guard.lifespan(app):
                yield
        finally:
            await ctx.aclose()

    app = _JarvisAPI(
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
        return {"status": "ok", "active_streams": guard.live_count()}

    @app.get("/v1/streams", summary="Live streams by session (leak checks; loopback only).")
    async def streams(request: Request) -> dict[str, Any]:
        sessions = guard.snapshot()
        active = sum(len(v) for v in sessions.values())
        if not is_loopback(request):
            # Session ids are what resume and stop trust: only this machine may list them.
            return {"active": active}
        return {"active": active, "sessions": sessions}

    @app.get("/v1/streams/{stream_id}", summary="Resume a stream after its Last-Event-ID.")
    async def resume_stream(stream_id: str, request: Request) -> Response:
        headers = request.headers
        return guard.resume(headers.get("x-session-id"), stream_id, headers.get("last-event-id"))

    @app.post("/v1/streams/{stream_id}/cancel", summary="Stop a stream of this session.")
    async def stop_stream(stream_id: str, request: Request) -> Response:
        session = request.headers.get("x-session-id")
        try:
            stopping = await guard.stop(session, stream_id)
        except BadRequest as exc:
            return guard.reject(exc, session=session)
        status = "stopping" if stopping else "ended"
        return JSONResponse(
            {"stream_id": stream_id, "status": status}, status_code=202 if stopping else 200
        )

    @app.get("/v1/models", summary="The model this server answers as.")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": ctx.source.name, "object": "model", "owned_by": "jarvis"}],
        }

    @app.get("/metrics", summary="Prometheus metrics.")
    async def metrics() -> Response:
        return Response(generate_latest(guard.prometheus), media_type=CONTENT_TYPE_LATEST)

    add_page_routes(app)  # the browser chat page at /
    return app
