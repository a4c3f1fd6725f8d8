"""Bad input end to end, on a real `jarvis serve`: every refusal is a 4xx OpenAI error
body (never a 500, never an event stream), and the server keeps serving afterwards."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from jarvis.synthetic import expected_text

from .conftest import ServerProcess, chat_body, content_of, sse_events
from .streams import raw_chat_request, raw_exchange

pytestmark = pytest.mark.e2e

TIMEOUT = httpx.Timeout(10.0)
CHAT = "/v1/chat/completions"
MIB = 1 << 20
TRACE_ID = re.compile(r"[0-9a-f]{16}")
STREAM_ID = re.compile(r"chatcmpl-[0-9a-f]{24}")


def ok_body(**extra: object) -> bytes:
    """A valid non-streamed body for a short prompt, with `extra` fields set or overridden."""
    return json.dumps({**chat_body("What is 2+2?", stream=False), **extra}).encode()


def user_body(content: object) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": content}]}).encode()


# (id, raw body, expected param)
BAD_BODIES: list[tuple[str, bytes, str | None]] = [
    ("malformed-json", b'{"messages": [{"role": "user"', None),
    ("empty-body", b"", None),
    ("non-utf8", b'{"messages": "\xff\xfe"}', None),
    ("deeply-nested", b"[" * 100_000, None),
    ("array-body", b'[{"role": "user", "content": "hi"}]', None),
    ("missing-messages", b'{"model": "jarvis-synthetic"}', "messages"),
    ("empty-messages", b'{"messages": []}', "messages"),
    ("messages-not-list", b'{"messages": "hi"}', "messages"),
    ("message-not-object", b'{"messages": ["hi"]}', "messages[0]"),
    ("bad-role", b'{"messages": [{"role": "robot", "content": "hi"}]}', "messages[0].role"),
    ("content-number", user_body(42), "messages[0].content"),
    ("content-part-not-object", user_body(["hi"]), "messages[0].content"),
    ("stream-string", ok_body(stream="yes"), "stream"),
    ("max-tokens-string", ok_body(max_tokens="10"), "max_tokens"),
    ("max-tokens-bool", ok_body(max_tokens=True), "max_tokens"),
    ("max-tokens-zero", ok_body(max_tokens=0), "max_tokens"),
    ("max-tokens-huge", ok_body(max_tokens=10**30), "max_tokens"),
    ("stream-options-not-object", ok_body(stream=True, stream_options="usage"), "stream_options"),
    ("model-empty", ok_body(model=""), "model"),
    ("model-number", ok_body(model=3), "model"),
]

# Values httpx sends as they are, and the app refuses.
BAD_SESSIONS_APP = ["a b", "a=b", 'a"b', "a\tb"]


def assert_openai_error(
    response: httpx.Response,
    status: int,
    *,
    param: str | None = None,
    code: str | None = None,
    chat: bool = True,
) -> dict[str, object]:
    """The response is a JSON OpenAI error envelope with this status; returns its `error`."""
    assert response.status_code == status, response.text
    content_type = response.headers["content-type"]
    assert content_type.startswith("application/json"), content_type
    assert "event-stream" not in content_type
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    if chat:
        assert TRACE_ID.fullmatch(response.headers.get("x-trace-id", "")), response.headers
        assert "x-stream-id" not in response.headers, "a refusal must not have started a stream"
    return error


def post_chat(
    server: ServerProcess,
    content: bytes | Iterator[bytes],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST raw `content` to the chat endpoint with a fresh connection, bounded by TIMEOUT."""
    with httpx.Client(timeout=TIMEOUT) as client:
        return client.post(f"{server.url}{CHAT}", content=content, headers=headers)


# --- one bad input at a time ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "param"),
    [pytest.param(raw, param, id=name) for name, raw, param in BAD_BODIES],
)
def test_bad_body_is_a_400_openai_error(
    shared_server: ServerProcess, raw: bytes, param: str | None
) -> None:
    """Each invalid body gets a 400 with a JSON `{"error": {message, type, param, code}}`
    naming the offending param, an X-Trace-Id, and no stream."""
    response = post_chat(shared_server, raw, headers={"Content-Type": "application/json"})
    assert_openai_error(response, 400, param=param)


def test_bad_request_is_logged_as_request_rejected_with_its_trace(
    shared_server: ServerProcess,
) -> None:
    """A refusal writes one `request_rejected` line whose trace is the X-Trace-Id returned
    and whose status and code are those of the response."""
    response = post_chat(shared_server, b'{"messages": []}')
    error = assert_openai_error(response, 400, param="messages", code="invalid_request")
    event = shared_server.wait_for_event("request_rejected", trace=response.headers["x-trace-id"])
    assert event["status"] == "400"
    assert event["code"] == "invalid_request"
    assert event["message"] == error["message"]


def test_body_over_one_mib_with_content_length_is_413(shared_server: ServerProcess) -> None:
    """A declared Content-Length over 1 MiB is refused with 413 `body_too_large`."""
    response = post_chat(shared_server, b" " * (MIB + 1))
    assert response.request.headers["content-length"] == str(MIB + 1)
    assert_openai_error(response, 413, code="body_too_large")


def test_chunked_body_over_one_mib_is_413(shared_server: ServerProcess) -> None:
    """A chunked body (no Content-Length) that grows past 1 MiB is refused with 413
    while it is read, not after buffering all of it."""

    def body() -> Iterator[bytes]:
        for _ in range(24):  # 24 x 64 KiB = 1.5 MiB
            yield b" " * 65536

    response = post_chat(shared_server, body())
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert_openai_error(response, 413, code="body_too_large")


def test_body_of_exactly_one_mib_is_accepted(shared_server: ServerProcess) -> None:
    """The limit is inclusive: a valid body padded to exactly 1 MiB is served (200)."""
    body = ok_body()
    padded = body + b" " * (MIB - len(body))
    assert len(padded) == MIB
    response = post_chat(shared_server, padded)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == expected_text("What is 2+2?")


@pytest.mark.parametrize("session", BAD_SESSIONS_APP, ids=["space", "equals", "quote", "tab"])
def test_bad_session_header_is_a_400_on_x_session_id(
    shared_server: ServerProcess, session: str
) -> None:
    """An X-Session-Id outside `[A-Za-z0-9._:-]{1,128}` is a 400 naming the header."""
    response = post_chat(shared_server, ok_body(), headers={"X-Session-Id": session})
    assert_openai_error(response, 400, param="X-Session-Id", code="invalid_session_id")


@pytest.mark.parametrize(
    "session", [s.encode() for s in BAD_SESSIONS_APP], ids=["space", "equals", "quote", "tab"]
)
def test_bad_session_header_sent_raw_is_a_400_on_x_session_id(
    shared_server: ServerProcess, session: bytes
) -> None:
    """The same values written byte for byte on a socket (no client-side handling) get the
    same 400 JSON error, with Content-Type application/json and an X-Trace-Id."""
    response = raw_exchange(shared_server.port, raw_chat_request(b"x" + session + b"x"))
    assert response is not None
    assert response.status == 400
    assert response.headers["content-type"] == "application/json"
    assert TRACE_ID.fullmatch(response.headers["x-trace-id"])
    error = json.loads(response.body)["error"]
    assert error["param"] == "X-Session-Id"
    assert error["code"] == "invalid_session_id"


def test_esc_in_session_header_is_refused_by_the_http_layer(shared_server: ServerProcess) -> None:
    """ESC is a control character, which RFC 9110 forbids in a field value: uvicorn's
    parser refuses the request with a 400 (or drops it) before the app runs, so no
    stream starts and nothing of it reaches the log."""
    marker = b"esc-marker-5f1d"
    response = raw_exchange(shared_server.port, raw_chat_request(marker + b"\x1b[31m"))
    if response is not None:
        assert response.status == 400
        assert "event-stream" not in response.headers.get("content-type", "")
    shared_server.barrier()
    assert marker.decode() not in shared_server.log_path.read_text(encoding="utf-8")


def test_lone_surrogate_prompt_is_a_400_not_a_failed_stream(shared_server: ServerProcess) -> None:
    """`"\\ud800"` is valid JSON but not text the model can encode. It is bad input, so
    it must be a 400 on `messages[0].content`, not a 200 whose stream ends with an
    `upstream_error` (a server-side failure) caused by the client."""
    body = b'{"messages": [{"role": "user", "content": "\\ud800"}], "stream": true}'
    response = post_chat(shared_server, body)
    assert_openai_error(response, 400, param="messages[0].content")


def test_unknown_route_is_a_404_openai_error(shared_server: ServerProcess) -> None:
    """An unknown path gets a 404 in the OpenAI error shape with code `not_found`."""
    with httpx.Client(timeout=TIMEOUT) as client:
        for response in (
            client.get(f"{shared_server.url}/v1/nope"),
            client.post(f"{shared_server.url}/v1/chat/completion", content=ok_body()),
        ):
            assert_openai_error(response, 404, code="not_found", chat=False)


def test_wrong_method_is_a_405_openai_error(shared_server: ServerProcess) -> None:
    """A known path with the wrong method gets a 405 in the OpenAI error shape."""
    with httpx.Client(timeout=TIMEOUT) as client:
        for response in (
            client.get(f"{shared_server.url}{CHAT}"),
            client.delete(f"{shared_server.url}/healthz"),
        ):
            assert_openai_error(response, 405, code="http_405", chat=False)


def test_wrong_method_405_names_the_allowed_methods(shared_server: ServerProcess) -> None:
    """RFC 9110 section 15.5.6: a 405 MUST carry an `Allow` header listing the methods the
    resource supports (Starlette raises it with one; the error handler must keep it)."""
    with httpx.Client(timeout=TIMEOUT) as client:
        response = client.get(f"{shared_server.url}{CHAT}")
    assert response.status_code == 405
    assert "POST" in response.headers.get("allow", ""), dict(response.headers)


# --- successful requests carry their ids ------------------------------------------------


def test_streamed_response_ids_match_every_chunk(shared_server: ServerProcess) -> None:
    """A streamed completion has X-Trace-Id and X-Stream-Id headers; every chunk's `id` is
    the X-Stream-Id; the text is exactly the synthetic model's and ends with [DONE]."""
    prompt = "What is the answer?"
    with (
        httpx.Client(timeout=TIMEOUT) as client,
        client.stream("POST", f"{shared_server.url}{CHAT}", json=chat_body(prompt)) as response,
    ):
        text = response.read().decode()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert TRACE_ID.fullmatch(response.headers["x-trace-id"])
    stream_id = response.headers["x-stream-id"]
    assert STREAM_ID.fullmatch(stream_id)
    events = sse_events(text)
    chunks = [e for e in events if isinstance(e, dict)]
    assert chunks
    assert {c["id"] for c in chunks} == {stream_id}
    assert content_of(events) == expected_text(prompt)
    assert text.endswith("data: [DONE]\n\n")


def test_whole_response_id_matches_x_stream_id(shared_server: ServerProcess) -> None:
    """A non-streamed completion is JSON whose `id` is the X-Stream-Id header."""
    response = post_chat(shared_server, ok_body())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert TRACE_ID.fullmatch(response.headers["x-trace-id"])
    assert response.json()["id"] == response.headers["x-stream-id"]


# --- after all of it --------------------------------------------------------------------


def send_every_bad_request(server: ServerProcess) -> int:
    """Fire every bad input above once; returns how many the app answered."""
    answered = 0
    with httpx.Client(timeout=TIMEOUT) as client:
        url = f"{server.url}{CHAT}"
        for _, raw, _ in BAD_BODIES:
            assert client.post(url, content=raw).status_code == 400
            answered += 1
        for session in BAD_SESSIONS_APP:
            response = client.post(url, content=ok_body(), headers={"X-Session-Id": session})
            assert response.status_code == 400
            answered += 1
        assert client.post(url, content=b" " * (MIB + 1)).status_code == 413
        assert client.get(f"{server.url}/v1/nope").status_code == 404
        assert client.get(url).status_code == 405
        answered += 3
    raw_exchange(server.port, raw_chat_request(b"a\x1bb"))
    return answered


def test_server_stays_healthy_after_every_bad_request(shared_server: ServerProcess) -> None:
    """After a burst of every bad input: /healthz answers ok, a normal streamed request
    completes with exactly the expected text and [DONE], no stream is left open, the
    metrics are Prometheus text, and the server printed no traceback."""
    assert send_every_bad_request(shared_server) == len(BAD_BODIES) + len(BAD_SESSIONS_APP) + 3
    url = shared_server.url
    prompt = "Tell me a long story"
    with httpx.Client(timeout=TIMEOUT) as client:
        health = client.get(f"{url}/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"

        body = chat_body(prompt, max_tokens=30)
        with client.stream("POST", f"{url}{CHAT}", json=body) as response:
            text = response.read().decode()
        assert response.status_code == 200
        assert content_of(sse_events(text)) == expected_text(prompt, 30)
        assert text.endswith("data: [DONE]\n\n")

        # The stream's cleanup runs just after [DONE]; give it a bounded moment.
        end = time.monotonic() + 3.0
        streams = client.get(f"{url}/v1/streams").json()
        while streams["active"] != 0 and time.monotonic() < end:
            time.sleep(0.05)
            streams = client.get(f"{url}/v1/streams").json()
        assert streams["active"] == 0, streams
        assert streams["sessions"] == {}

        metrics = client.get(f"{url}/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "# TYPE jarvis_streams_started_total counter" in metrics.text
        started = re.search(r"^jarvis_streams_started_total (\S+)$", metrics.text, re.M)
        assert started is not None
        assert float(started.group(1)) >= 1

    assert shared_server.proc.poll() is None, "the server must still be running"
    stderr = shared_server.output.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in stderr
    assert "Exception in ASGI application" not in stderr
