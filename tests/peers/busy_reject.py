"""Raw asyncio, HTTP/1.1 written by hand (no framework, no ASGI): one answer per session
(`X-Session-Id`), and a prompt that arrives while its session is answering is refused at
once with `409 Conflict` and `Retry-After: 1`; the running answer goes on whole. Each
response is sent with `Connection: close` (an SSE body ends when the connection does).
A session is busy from its prompt's arrival until its answer has been written or its
client has left (noticed by a read that sees the connection end, or a failed write).

    python -m tests.peers.busy_reject --port 8001
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

from ._synth import MODEL, PACE_S, listen, max_tokens_of, parse_args, prompt_of, tokens

#: Sessions with an answer under way: the whole of this server's policy.
BUSY: set[str] = set()
#: Largest request head or body this server reads.
LIMIT = 1 << 20


def _response(status: str, body: bytes, *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close", *extra]  # fmt: skip
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _json(status: str, payload: object, *extra: str) -> bytes:
    return _response(status, json.dumps(payload).encode(), *extra)


def _event(stream_id: str, content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    chunk = {"id": stream_id, "object": "chat.completion.chunk", "model": MODEL,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return f"data: {json.dumps(chunk)}\n\n".encode()


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, dict[str, str], bytes] | None:
    """Method, path, headers (names lower-cased, values as latin-1 text) and body."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    request_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3:
        return None
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip(" \t")
    length = headers.get("content-length", "0")
    size = int(length) if length.isdigit() else 0
    try:
        body = await reader.readexactly(min(size, LIMIT))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return parts[0], parts[1].split("?", 1)[0], headers, body


async def _stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: object, session: str | None
) -> None:
    """Stream the answer; the session is busy until the last byte is written or the
    client is gone."""
    stream_id = f"chatcmpl-{uuid.uuid4().hex[:20]}"
    gone = asyncio.ensure_future(reader.read(1))  # b"" (or an error) once the client leaves
    try:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"X-Stream-Id: " + stream_id.encode() + b"\r\nConnection: close\r\n\r\n"
        )
        for word in tokens(prompt_of(body), max_tokens_of(body)):
            if gone.done():
                return
            writer.write(_event(stream_id, word))
            await writer.drain()
            await asyncio.sleep(PACE_S)
        writer.write(_event(stream_id, None, "stop") + b"data: [DONE]\n\n")
        await writer.drain()
    except ConnectionError:
        return
    finally:
        gone.cancel()
        if gone.done() and not gone.cancelled():
            gone.exception()  # a reset read: the client left, as `done` already said
        if session is not None:
            BUSY.discard(session)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await _read_request(reader)
        if request is None:
            writer.write(_json("400 Bad Request", {"error": {"message": "bad request"}}))
            return
        method, path, headers, raw = request
        if method == "GET" and path == "/health":
            writer.write(_json("200 OK", {"status": "ok"}))
        elif method == "GET" and path == "/v1/models":
            writer.write(_json("200 OK", {"object": "list", "data": [{"id": MODEL}]}))
        elif method == "POST" and path == "/v1/chat/completions":
            try:
                body = json.loads(raw)
            except ValueError:
                writer.write(_json("400 Bad Request", {"error": {"message": "not JSON"}}))
                return
            session = headers.get("x-session-id")
            if session is not None and session in BUSY:
                error = {"message": "this session is answering; retry shortly",
                         "type": "conflict", "code": "session_busy"}  # fmt: skip
                writer.write(_json("409 Conflict", {"error": error}, "Retry-After: 1"))
                return
            if session is not None:
                BUSY.add(session)
            await _stream(reader, writer, body, session)
        else:
            writer.write(_json("404 Not Found", {"error": {"message": "not found"}}))
    finally:
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def main_async(port: int) -> None:
    server = await asyncio.start_server(handle, sock=listen(port), limit=LIMIT)
    async with server:
        await server.serve_forever()


def main() -> None:
    args = parse_args(__doc__ or "")
    asyncio.run(main_async(args.port))


if __name__ == "__main__":
    main()
