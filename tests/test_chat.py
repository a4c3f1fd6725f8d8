"""`jarvis.server.chat` and the guard's session check: what a chat-completions body and an
`X-Session-Id` parse into, and how every invalid one is refused with an OpenAI-style 400
naming the offending `param`."""

from __future__ import annotations

import json

import pytest

from jarvis._guard import check_session
from jarvis.exceptions import BadRequest, JarvisError
from jarvis.server.chat import (
    DEFAULT_MODEL,
    MAX_TOKENS_CAP,
    ChatRequest,
    parse_chat_request,
)


def encode(body: object) -> bytes:
    return json.dumps(body).encode()


def user(content: object) -> dict[str, object]:
    return {"role": "user", "content": content}


def with_messages(**extra: object) -> bytes:
    """A valid one-message body plus `extra` fields."""
    return encode({"messages": [user("hello there")], **extra})


# --- valid bodies -----------------------------------------------------------------------


def test_string_content_becomes_the_prompt() -> None:
    """A plain string `content` of the user message is the prompt, verbatim."""
    request = parse_chat_request(encode({"messages": [user("What is 2+2?")]}))
    assert isinstance(request, ChatRequest)
    assert request.prompt == "What is 2+2?"
    assert request.messages == [user("What is 2+2?")]


def test_list_of_parts_content_joins_the_text_parts_and_ignores_others() -> None:
    """A list of content parts yields the concatenated `text` parts, in order; image or
    malformed-but-object parts contribute nothing."""
    parts = [
        {"type": "text", "text": "Long "},
        {"type": "image_url", "image_url": {"url": "http://example.invalid/x.png"}},
        {"type": "text", "text": "essay"},
        {"type": "text", "text": 7},
        {"text": "no type"},
    ]
    request = parse_chat_request(encode({"messages": [user(parts)]}))
    assert request.prompt == "Long essay"


def test_null_content_is_an_empty_text() -> None:
    """`content: null` (an assistant turn with tool calls, say) is accepted as empty text."""
    request = parse_chat_request(encode({"messages": [user(None)]}))
    assert request.prompt == ""


def test_omitted_fields_take_the_documented_defaults() -> None:
    """Without `model`, `stream`, `stream_options` or a token cap, the request is the
    synthetic model, not streamed, without usage, uncapped."""
    request = parse_chat_request(encode({"messages": [user("hi")]}))
    assert request.model == DEFAULT_MODEL == "jarvis-synthetic"
    assert request.stream is False
    assert request.include_usage is False
    assert request.max_tokens is None


def test_explicit_fields_are_read() -> None:
    """`model`, `stream: true` and `stream_options.include_usage: true` are taken as given,
    and `raw` keeps the whole decoded body."""
    body = {
        "model": "gpt-4o-mini",
        "messages": [user("hi")],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
    }
    request = parse_chat_request(encode(body))
    assert request.model == "gpt-4o-mini"
    assert request.stream is True
    assert request.include_usage is True
    assert request.raw == body


def test_stream_null_means_not_streamed() -> None:
    """`stream: null` is what some SDKs send for "unset": it means not streamed."""
    assert parse_chat_request(with_messages(stream=None)).stream is False


@pytest.mark.parametrize("flag", [False, 1, "true", None])
def test_include_usage_is_on_only_for_literal_true(flag: object) -> None:
    """Only `include_usage: true` turns usage on; any other value leaves it off."""
    request = parse_chat_request(with_messages(stream=True, stream_options={"include_usage": flag}))
    assert request.include_usage is False


def test_empty_stream_options_object_is_accepted_without_usage() -> None:
    """`stream_options: {}` is valid and does not ask for usage."""
    assert parse_chat_request(with_messages(stream_options={})).include_usage is False


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [1, 16, MAX_TOKENS_CAP])
def test_token_cap_accepted_under_either_name(key: str, value: int) -> None:
    """`max_tokens` and its newer name `max_completion_tokens` both set the cap, 1..cap."""
    assert parse_chat_request(with_messages(**{key: value})).max_tokens == value


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    """With both names present, `max_completion_tokens` (the current one) is the cap."""
    request = parse_chat_request(with_messages(max_tokens=50, max_completion_tokens=7))
    assert request.max_tokens == 7


def test_prompt_is_the_last_user_message() -> None:
    """In a conversation the prompt is the last `user` turn, not the system prompt nor
    the last message overall."""
    messages = [
        {"role": "system", "content": "be brief"},
        user("first question"),
        {"role": "assistant", "content": "first answer"},
        user([{"type": "text", "text": "second question"}]),
        {"role": "assistant", "content": "thinking..."},
    ]
    request = parse_chat_request(encode({"messages": messages}))
    assert request.prompt == "second question"


def test_conversation_without_user_message_has_an_empty_prompt() -> None:
    """A body with only a system message is valid; its prompt is empty."""
    request = parse_chat_request(encode({"messages": [{"role": "system", "content": "x"}]}))
    assert request.prompt == ""
    assert request.prompt_tokens == 0


@pytest.mark.parametrize("role", ["system", "developer", "user", "assistant", "tool", "function"])
def test_every_openai_role_is_accepted(role: str) -> None:
    """Each role the OpenAI API defines is accepted."""
    request = parse_chat_request(encode({"messages": [{"role": role, "content": "x"}]}))
    assert request.messages[0]["role"] == role


def test_prompt_tokens_counts_whitespace_separated_words() -> None:
    """`prompt_tokens` (the usage figure) is the number of words of the prompt."""
    assert parse_chat_request(encode({"messages": [user("  one two\tthree\n")]})).prompt_tokens == 3


def test_utf8_non_ascii_prompt_round_trips() -> None:
    """Non-ASCII text, raw UTF-8 or `\\u` escaped, decodes to the same prompt."""
    text = "héllo wörld 日本 \U0001f600"
    raw_utf8 = json.dumps({"messages": [user(text)]}, ensure_ascii=False).encode()
    assert parse_chat_request(raw_utf8).prompt == text
    assert parse_chat_request(encode({"messages": [user(text)]})).prompt == text


# --- refusals ---------------------------------------------------------------------------

# (id, raw body, expected param, expected code)
REFUSALS: list[tuple[str, bytes, str | None, str]] = [
    ("malformed-json", b'{"messages": [', None, "invalid_json"),
    ("trailing-garbage", b'{"messages": []} x', None, "invalid_json"),
    ("empty-body", b"", None, "invalid_json"),
    ("non-utf8-bytes", b'{"messages": "\xff\xfe"}', None, "invalid_json"),
    ("deeply-nested-array", b"[" * 100_000, None, "invalid_json"),
    ("deeply-nested-object", b'{"a":' * 100_000, None, "invalid_json"),
    ("json-array-body", b'[{"messages": []}]', None, "invalid_json"),
    ("json-null-body", b"null", None, "invalid_json"),
    ("json-string-body", b'"hello"', None, "invalid_json"),
    ("json-number-body", b"42", None, "invalid_json"),
    ("missing-messages", encode({"model": "m"}), "messages", "invalid_request"),
    ("empty-messages", encode({"messages": []}), "messages", "invalid_request"),
    ("null-messages", encode({"messages": None}), "messages", "invalid_request"),
    ("string-messages", encode({"messages": "hi"}), "messages", "invalid_request"),
    ("object-messages", encode({"messages": user("hi")}), "messages", "invalid_request"),
    ("message-is-string", encode({"messages": ["hi"]}), "messages[0]", "invalid_request"),
    (
        "second-message-is-number",
        encode({"messages": [user("hi"), 3]}),
        "messages[1]",
        "invalid_request",
    ),
    (
        "role-missing",
        encode({"messages": [{"content": "x"}]}),
        "messages[0].role",
        "invalid_request",
    ),
    (
        "role-unknown",
        encode({"messages": [{"role": "robot", "content": "x"}]}),
        "messages[0].role",
        "invalid_request",
    ),
    (
        "role-wrong-case",
        encode({"messages": [{"role": "User", "content": "x"}]}),
        "messages[0].role",
        "invalid_request",
    ),
    (
        "role-not-string",
        encode({"messages": [{"role": 1, "content": "x"}]}),
        "messages[0].role",
        "invalid_request",
    ),
    ("content-number", encode({"messages": [user(1)]}), "messages[0].content", "invalid_request"),
    ("content-bool", encode({"messages": [user(True)]}), "messages[0].content", "invalid_request"),
    (
        "content-object",
        encode({"messages": [user({"text": "x"})]}),
        "messages[0].content",
        "invalid_request",
    ),
    (
        "content-part-not-object",
        encode({"messages": [user(["x"])]}),
        "messages[0].content",
        "invalid_request",
    ),
    (
        "second-message-bad-content",
        encode({"messages": [user("ok"), user(2.5)]}),
        "messages[1].content",
        "invalid_request",
    ),
    ("stream-string", with_messages(stream="true"), "stream", "invalid_request"),
    ("stream-int", with_messages(stream=1), "stream", "invalid_request"),
    ("stream-object", with_messages(stream={}), "stream", "invalid_request"),
    ("max-tokens-true", with_messages(max_tokens=True), "max_tokens", "invalid_request"),
    ("max-tokens-false", with_messages(max_tokens=False), "max_tokens", "invalid_request"),
    ("max-tokens-string", with_messages(max_tokens="5"), "max_tokens", "invalid_request"),
    ("max-tokens-float", with_messages(max_tokens=5.0), "max_tokens", "invalid_request"),
    ("max-tokens-zero", with_messages(max_tokens=0), "max_tokens", "invalid_request"),
    ("max-tokens-negative", with_messages(max_tokens=-1), "max_tokens", "invalid_request"),
    (
        "max-tokens-over-cap",
        with_messages(max_tokens=MAX_TOKENS_CAP + 1),
        "max_tokens",
        "invalid_request",
    ),
    ("max-tokens-huge", with_messages(max_tokens=10**40), "max_tokens", "invalid_request"),
    (
        "max-completion-tokens-bool",
        with_messages(max_completion_tokens=True),
        "max_completion_tokens",
        "invalid_request",
    ),
    (
        "max-completion-tokens-zero",
        with_messages(max_completion_tokens=0, max_tokens=5),
        "max_completion_tokens",
        "invalid_request",
    ),
    (
        "stream-options-string",
        with_messages(stream_options="x"),
        "stream_options",
        "invalid_request",
    ),
    (
        "stream-options-list",
        with_messages(stream_options=[{"include_usage": True}]),
        "stream_options",
        "invalid_request",
    ),
    (
        "stream-options-bool",
        with_messages(stream_options=True),
        "stream_options",
        "invalid_request",
    ),
    ("model-empty", with_messages(model=""), "model", "invalid_request"),
    ("model-number", with_messages(model=5), "model", "invalid_request"),
    ("model-null", with_messages(model=None), "model", "invalid_request"),
    ("model-list", with_messages(model=["m"]), "model", "invalid_request"),
]


@pytest.mark.parametrize(
    ("raw", "param", "code"),
    [pytest.param(raw, param, code, id=name) for name, raw, param, code in REFUSALS],
)
def test_invalid_body_is_refused_with_400_naming_the_param(
    raw: bytes, param: str | None, code: str
) -> None:
    """Every invalid body raises `BadRequest` (never another exception, never a
    `RecursionError` or `UnicodeDecodeError` leaking out) with status 400, the OpenAI
    `invalid_request_error` type, and the `param` and `code` that name the problem."""
    with pytest.raises(BadRequest) as caught:
        parse_chat_request(raw)
    exc = caught.value
    assert exc.status == 400
    assert exc.param == param
    assert exc.code == code
    assert exc.error_type == "invalid_request_error"
    assert exc.message
    assert exc.to_body() == {
        "error": {
            "message": exc.message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }


def test_lone_surrogate_in_content_is_refused_before_a_stream_exists() -> None:
    """`"\\ud800"` is valid JSON but not encodable text: the model cannot hash or echo it.
    It must be refused here, as a 400 on `messages[0].content`, not accepted and left
    to fail inside the stream as an "upstream" error."""
    with pytest.raises(BadRequest) as caught:
        parse_chat_request(b'{"messages": [{"role": "user", "content": "a\\ud800b"}]}')
    assert caught.value.status == 400
    assert caught.value.param == "messages[0].content"


def test_bad_request_is_a_jarvis_error() -> None:
    """Refusals belong to the library's one exception tree, so callers can catch it."""
    with pytest.raises(JarvisError):
        parse_chat_request(b"{")


# --- X-Session-Id -----------------------------------------------------------------------


def test_absent_session_header_is_none() -> None:
    """No `X-Session-Id` header means no session (the server then makes an anonymous one)."""
    assert check_session(None) is None


@pytest.mark.parametrize(
    "session",
    [
        "a",
        "s1",
        "user-42",
        "A.b_c:d-e",
        "0",
        "anon-chatcmpl-8b9f89fc00296582faf546ac",
        "x" * 128,
        "-._:",
    ],
)
def test_valid_session_id_is_returned_unchanged(session: str) -> None:
    """Ids of 1..128 characters from `A-Za-z0-9._:-` are accepted as they are."""
    assert check_session(session) == session


@pytest.mark.parametrize(
    "session",
    [
        pytest.param("a b", id="space"),
        pytest.param(" ", id="only-space"),
        pytest.param("a=b", id="equals"),
        pytest.param("event=stream_end", id="forged-key"),
        pytest.param('a"b', id="quote"),
        pytest.param("a'b", id="single-quote"),
        pytest.param("a\tb", id="tab"),
        pytest.param("a\x1bb", id="esc"),
        pytest.param("a\nb", id="newline"),
        pytest.param("abc\n", id="trailing-newline"),
        pytest.param("a\r\nb", id="crlf"),
        pytest.param("a\x00b", id="nul"),
        pytest.param("a\x85b", id="nel"),
        pytest.param("", id="empty"),
        pytest.param("x" * 129, id="129-chars"),
        pytest.param("x" * 8192, id="8k-chars"),
        pytest.param("é", id="non-ascii-e-acute"),
        pytest.param("Ã©", id="utf8-read-as-latin1"),
        pytest.param("a\u2028b", id="line-separator"),
        pytest.param("a/b", id="slash"),
        pytest.param("a\\b", id="backslash"),
    ],
)
def test_invalid_session_id_is_refused_with_400_on_the_header(session: str) -> None:
    """Anything outside `^[A-Za-z0-9._:-]{1,128}$` (a trailing newline included, which a
    `$`-anchored regex would let through) is a 400 naming `X-Session-Id`."""
    with pytest.raises(BadRequest) as caught:
        check_session(session)
    exc = caught.value
    assert exc.status == 400
    assert exc.param == "X-Session-Id"
    assert exc.code == "invalid_session_id"
    assert exc.error_type == "invalid_request_error"
