"""jarvis_cli/chatapi: dialects, where the session travels, target files and how flags merge with
them. Each of verify-hang, swarm and the locustfile speaks to servers through this code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jarvis.exceptions import ConfigError
from jarvis_cli.chatapi import SessionIn, SSEEvent, dialect_named, load_target
from jarvis_cli.chatapi.resolve import chat_api
from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.main import main

TARGET = """
url = "http://127.0.0.1:9000"
health = "/api/ping"
session = "body:conversation_id"
[request]
path = "/api/chat"
[request.body]
message = "{prompt}"
conversation_id = "{session}"
max_tokens = "{max_tokens}"
meta = { note = "about {prompt}" }
[stream]
text = "delta.text"
end = "event:done"
id = "stream"
"""


def target_file(tmp_path: Path, text: str = TARGET) -> Path:
    path = tmp_path / "api.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("header:X-Session-Id", {"headers": {"X-Session-Id": "s1"}}),
        ("body:metadata.session_id", {"body": {"metadata": {"session_id": "s1"}}}),
        ("query:sid", {"params": {"sid": "s1"}}),
        ("cookie:sid", {"cookies": {"sid": "s1"}}),
    ],
)
def test_the_session_goes_where_session_in_says(text: str, where: dict[str, object]) -> None:
    """Each carrier puts the id in its own place of the request, and nowhere else."""
    request = dialect_named("openai").request(
        "hi", session="s1", session_in=SessionIn.parse(text), model="m", max_tokens=None
    )
    placed = {
        "headers": {k: v for k, v in request.headers.items() if k == "X-Session-Id"},
        "body": {k: v for k, v in request.body.items() if k == "metadata"},
        "params": request.params,
        "cookies": request.cookies,
    }
    assert {k: v for k, v in placed.items() if v} == where


@pytest.mark.parametrize("bad", ["X-Session-Id", "header:", "tail:x", "body:a..b", "query:a.b"])
def test_a_bad_session_in_is_a_usage_error_that_says_the_forms(bad: str) -> None:
    """Anything but header:/body:/query:/cookie: with a name is refused, saying why."""
    with pytest.raises(ConfigError, match="--session-in"):
        SessionIn.parse(bad)


def test_a_target_file_builds_its_request_and_reads_its_events(tmp_path: Path) -> None:
    """Placeholders filled (an exact one becomes the value, an int for max_tokens; one
    inside a string is text), the session in the body, events read by the file's paths."""
    spec = load_target(target_file(tmp_path))
    assert (spec.url, spec.health, str(spec.session_in)) == (
        "http://127.0.0.1:9000", "/api/ping", "body:conversation_id",
    )  # fmt: skip
    request = spec.dialect.request(
        "Hello", session="s-9", session_in=spec.session_in, model="m", max_tokens=7
    )
    assert request.path == "/api/chat"
    assert request.body == {
        "message": "Hello", "conversation_id": "s-9", "max_tokens": 7,
        "meta": {"note": "about Hello"},
    }  # fmt: skip
    token = spec.dialect.read(
        SSEEvent("token", json.dumps({"delta": {"text": "ab"}, "stream": "x"}))
    )
    done = spec.dialect.read(SSEEvent("done", "{}"))
    garbage = spec.dialect.read(SSEEvent("token", "{not json"))
    assert token is not None and (token.text, token.stream_id) == ("ab", "x")
    assert done is not None and done.done
    assert garbage is not None and garbage.malformed


def test_without_a_session_or_max_tokens_their_keys_are_left_out(tmp_path: Path) -> None:
    """No session id (the hostile 'none' case) and no max_tokens: the keys are absent,
    not null."""
    spec = load_target(target_file(tmp_path))
    assert spec.session_in is not None
    request = spec.dialect.request(
        "Hello", session=None, session_in=spec.session_in, model="m", max_tokens=None
    )
    assert "conversation_id" not in request.body
    assert "max_tokens" not in request.body


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (TARGET.replace('end = "event:done"', ""), "stream.end"),
        (TARGET.replace('end = "event:done"', 'end = "done"'), "stream.end"),
        (TARGET.replace('path = "/api/chat"', 'path = "api/chat"'), "request.path"),
        (TARGET + "\n[extra]\n", "unknown key extra"),
        (TARGET.replace('text = "delta.text"', 'txt = "delta.text"'), "unknown key stream.txt"),
        (TARGET.replace('session = "body:conversation_id"', 'session = "nowhere"'), "session"),
        ("url = ", "not valid TOML"),
    ],
)
def test_a_bad_target_file_is_a_usage_error_naming_the_key(
    tmp_path: Path, text: str, names: str
) -> None:
    """Every mistake in the file names the key (or the TOML error), and the file."""
    path = target_file(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_target(path)
    assert names in str(caught.value)
    assert str(path) in str(caught.value)


def test_flags_override_the_target_file(tmp_path: Path) -> None:
    """--url, --session-in and --health win over the file's url, session and health."""
    api = chat_api(
        ["http://127.0.0.1:1"],
        target=target_file(tmp_path),
        session_in="header:X-Conv",
        health="/up",
    )
    assert api.urls == ("http://127.0.0.1:1",)
    assert str(api.session_in) == "header:X-Conv"
    assert api.health == "/up"
    plain = chat_api([], target=target_file(tmp_path))
    assert plain.urls == ("http://127.0.0.1:9000",)
    assert str(plain.session_in) == "body:conversation_id"
    assert plain.probe_path == "/api/ping"
    spoken = chat_api([], target=target_file(tmp_path), dialect="anthropic")
    assert spoken.dialect.name == "anthropic"  # --dialect overrides the file's [stream]
    assert chat_api([], dialect="anthropic").probe_path == "/v1/models"


def test_anthropic_events_say_text_stop_reason_and_end() -> None:
    """The Messages stream: text deltas, the stop reason (natural or not), message_stop."""
    read = dialect_named("anthropic").read
    delta = read(
        SSEEvent(
            "content_block_delta",
            json.dumps(
                {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "x"}}
            ),
        )
    )
    stop = read(
        SSEEvent(
            "message_delta",
            json.dumps({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}}),
        )
    )
    end = read(SSEEvent("message_stop", json.dumps({"type": "message_stop"})))
    error = read(
        SSEEvent(
            "error",
            json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}),
        )
    )
    assert read(SSEEvent("ping", json.dumps({"type": "ping"}))) is None
    assert delta is not None and delta.text == "x"
    assert stop is not None and (stop.finish, stop.natural) == ("max_tokens", True)
    assert end is not None and end.done
    assert error is not None and error.error == "busy"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--dialect", "cohere"], "--dialect takes openai or anthropic"),
        (["--session-in", "somewhere"], "--session-in takes one of"),
        (["--health", "health"], "--health must be a path"),
        (["--target", "/nonexistent/api.toml"], "cannot read it"),
    ],
)
def test_verify_hang_refuses_bad_dialect_options_with_exit_2(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad input is a usage error on stderr before anything starts: no traceback."""
    code = main(["verify-hang", "--url", "http://127.0.0.1:9", *args])
    assert code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert says in " ".join(err.split())
    assert "Traceback" not in err
