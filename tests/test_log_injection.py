"""Hostile client values cannot split, forge, corrupt or erase a log line.

End to end, hostile `X-Session-Id` bytes are written raw on a socket (so no client
library cleans them) to a real `jarvis serve`; the log file is then read back as bytes.
At unit level the logfmt and JSON encoders are checked over every control character and
a seeded random sample (hypothesis is not installed, so the cases are enumerated).
"""

from __future__ import annotations

import json
import random
import re
import time

import httpx
import pytest

from jarvis.logfmt import bound, format_json, format_logfmt, format_value, parse_logfmt
from jarvis.vocabulary import EVENTS, Event, cut_length

from .conftest import ServerProcess
from .streams import raw_chat_request, raw_exchange

pytestmark = pytest.mark.e2e

TIMEOUT_S = 5.0
HEAD = ["ts", "level", "event"]
EVENT_NAMES = {event.value for event in EVENTS}
# What no log line may contain: C0, DEL, C1, and the Unicode line/paragraph separators
# (everything `str.splitlines` breaks on is in this set).
FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
REJECTED_FIELDS = [*HEAD, *EVENTS[Event.REQUEST_REJECTED].fields]

# Session values the HTTP layer passes through and the app must refuse and log verbatim.
# None starts or ends with whitespace, which HTTP strips from a field value.
REACH_APP: list[tuple[str, bytes]] = [
    ("space", b"a b"),
    ("equals", b"a=b"),
    ("quote", b'a"b'),
    ("tab", b"a\tb"),
    ("forged-key", b"event=stream_end"),
    ("forged-fields", b'x" level=info event=stream_end session="y'),
    ("fake-escapes", b"a\\nb\\x00c\\u2028d\\"),
    ("8k", b"x" + (b' event=stream_end "q"\t\\ =' * 400)[:8190] + b"x"),
    ("utf8-e-acute", "é".encode()),
    ("utf8-line-separator", "a\u2028b".encode()),
    ("utf8-paragraph-separator", "a\u2029b".encode()),
    ("latin1-nel", b"a\x85b"),
    ("latin1-e-acute", b"\xe9"),
    ("empty", b""),
]

# Values RFC 9110/9112 forbid in a field value: the HTTP parser must refuse them (400 or
# a closed connection) before the app runs. Each starts with a marker to look for.
PROTOCOL_REFUSED: list[tuple[str, bytes]] = [
    ("crlf-forged-line", b"\r\nevent=stream_end"),
    ("crlf-forged-log-line", b"\r\nts=2026-01-01T00:00:00Z level=info event=stream_end"),
    ("obs-fold", b"\r\n event=stream_end"),
    ("bare-cr", b"\revent=stream_end"),
    ("bare-lf", b"\nevent=stream_end"),
    ("nul", b"\x00b"),
]

# Control characters a lenient parser might pass through: either refused by the parser
# or refused by the app, and in both cases the log stays whole.
EITHER: list[tuple[str, bytes]] = [
    ("esc", b"\x1b[2J"),
    ("del", b"\x7f"),
    ("soh", b"\x01"),
    ("vertical-tab", b"\x0b"),
    ("form-feed", b"\x0c"),
    ("file-separator", b"\x1c"),
]


def log_lines(server: ServerProcess) -> list[str]:
    """The log file's lines, split on LF only, decoded as strict UTF-8."""
    text = server.log_path.read_bytes().decode("utf-8")
    assert text == "" or text.endswith("\n"), "the last line must be complete"
    return text.split("\n")[:-1]


def line_with_trace(server: ServerProcess, trace: str) -> str:
    """The one log line of this trace (request_rejected), waiting for the writer thread."""
    end = time.monotonic() + TIMEOUT_S
    while True:
        found = [line for line in log_lines(server) if f" trace={trace} " in line]
        if found or time.monotonic() > end:
            break
        time.sleep(0.02)
    assert len(found) == 1, found
    return found[0]


def assert_whole_line(line: str) -> dict[str, str]:
    """One line, one event of the vocabulary, with exactly its fields, in order."""
    assert line.startswith("ts="), line[:200]
    assert not FORBIDDEN.search(line), line[:200]
    assert line.splitlines() == [line]
    fields = parse_logfmt(line)
    assert list(fields)[:3] == HEAD, line[:200]
    assert fields["event"] in EVENT_NAMES, line[:200]
    spec = EVENTS[Event(fields["event"])]
    assert fields["level"] == spec.level
    assert list(fields) == [*HEAD, *spec.fields], line[:200]
    return fields


def send_hostile(server: ServerProcess, value: bytes) -> str | None:
    """Send one hostile session value and check its outcome.

    Returns the trace when the app refused it (a JSON 400 whose `request_rejected`
    line carries the exact value, cut past its bound with its length said), or None
    when the HTTP layer refused it (a 400 or a closed connection, and not a byte of it
    in the log).
    """
    raw = raw_exchange(server.port, raw_chat_request(value), TIMEOUT_S)
    response = None if raw is None else (raw.status, raw.headers, raw.body)
    if response is None:
        return None
    status, headers, body = response
    assert status == 400, (status, body[:300])
    if headers.get("content-type") != "application/json":
        return None
    error = json.loads(body)["error"]
    assert error["param"] == "X-Session-Id"
    assert error["code"] == "invalid_session_id"
    trace = headers["x-trace-id"]
    fields = assert_whole_line(line_with_trace(server, trace))
    assert list(fields) == REJECTED_FIELDS
    assert fields["event"] == "request_rejected"
    # HTTP field values are bytes; the server reads them as latin-1, one char per byte.
    sent = value.decode("latin-1")
    assert fields["session"] == bound("session", sent)
    if fields["session"] != sent:  # the 8 KB one: its first 256 characters and its length
        assert cut_length("session", fields["session"]) == len(sent)
    assert fields["status"] == "400"
    assert fields["code"] == "invalid_session_id"
    assert fields["message"] == error["message"]
    return trace


def assert_not_logged(server: ServerProcess, marker: str) -> None:
    server.barrier()  # everything logged before now is in the file
    assert marker not in server.log_path.read_text(encoding="utf-8")


# --- end to end -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [v for _, v in REACH_APP], ids=[n for n, _ in REACH_APP])
def test_hostile_session_is_refused_and_logged_verbatim_on_one_line(
    shared_server: ServerProcess, value: bytes
) -> None:
    """Spaces, `=`, quotes, tabs, forged `event=`/fields, fake escapes, 8 KB, non-ASCII and
    C1 bytes: a JSON 400 on X-Session-Id, and exactly one `request_rejected` line whose
    `session` parses back to exactly the bytes sent (the 8 KB one cut to its bound, with
    its length) and whose later fields are intact."""
    assert send_hostile(shared_server, value) is not None


@pytest.mark.parametrize(
    "value", [v for _, v in PROTOCOL_REFUSED], ids=[n for n, _ in PROTOCOL_REFUSED]
)
def test_header_breaking_session_is_refused_by_http_and_never_logged(
    shared_server: ServerProcess, value: bytes
) -> None:
    """CR, LF, CRLF-injected lines, obsolete line folding and NUL are refused by the HTTP
    parser (400 or closed connection): the app never sees them, nothing is logged, and
    the injected `event=stream_end` does not become a header or a log line."""
    marker = f"mark-{time.monotonic_ns()}"
    assert send_hostile(shared_server, marker.encode() + value) is None
    assert_not_logged(shared_server, marker)


@pytest.mark.parametrize("value", [v for _, v in EITHER], ids=[n for n, _ in EITHER])
def test_control_character_session_is_refused_at_either_layer_and_log_stays_whole(
    shared_server: ServerProcess, value: bytes
) -> None:
    """ESC, DEL and other C0 bytes are refused, by the HTTP parser (nothing logged) or by
    the app (logged escaped, round-tripping exactly); never a 500, never a split line."""
    marker = f"mark-{time.monotonic_ns()}"
    if send_hostile(shared_server, marker.encode() + value) is None:
        assert_not_logged(shared_server, marker)


def test_lone_surrogate_in_body_does_not_erase_log_lines(shared_server: ServerProcess) -> None:
    """A `model` of `"m\\ud800"` (valid JSON, not encodable as UTF-8) must not make the
    writer drop lines: whether the request is refused (`request_rejected`) or served
    (`stream_start` ... `stream_end`), every event of its trace is in the log."""
    body = b'{"model": "m\\ud800", "messages": [{"role": "user", "content": "What is 2+2?"}]}'
    with httpx.Client(timeout=10.0) as client:
        response = client.post(f"{shared_server.url}/v1/chat/completions", content=body)
    assert response.status_code in (200, 400)
    trace = response.headers["x-trace-id"]
    expected = {"request_rejected"} if response.status_code == 400 else {"stream_start"}
    if response.status_code == 200:
        shared_server.wait_for_event("stream_end", trace=trace)
    shared_server.barrier()
    names = {e["event"] for e in shared_server.events() if e.get("trace") == trace}
    assert expected <= names, names


def test_log_is_one_whole_event_per_line_after_hostile_input(shared_server: ServerProcess) -> None:
    """After every hostile value and a normal request: the file is valid UTF-8, splitting
    on LF and on every Unicode line break gives the same lines, every line starts with
    `ts=` and is one vocabulary event with its exact fields, each refused request wrote
    exactly one line, and the server still answers."""
    before = sum("event=request_rejected" in line for line in log_lines(shared_server))
    traces = []
    for _, value in REACH_APP:
        trace = send_hostile(shared_server, value)
        assert trace is not None
        traces.append(trace)
    for _, value in PROTOCOL_REFUSED:
        assert send_hostile(shared_server, b"p" + value) is None
    for _, value in EITHER:
        trace = send_hostile(shared_server, b"e" + value)
        if trace is not None:
            traces.append(trace)
    with httpx.Client(timeout=10.0) as client:
        ok = client.post(
            f"{shared_server.url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "What is 2+2?"}]},
            headers={"X-Session-Id": "clean-1"},
        )
        assert ok.status_code == 200
        shared_server.wait_for_event("stream_end", trace=ok.headers["x-trace-id"])
        assert client.get(f"{shared_server.url}/healthz").json()["status"] == "ok"

    text = shared_server.log_path.read_bytes().decode("utf-8")
    lines = log_lines(shared_server)
    assert len(text.splitlines()) == len(lines)
    events = [assert_whole_line(line) for line in lines]
    rejected = [e for e in events if e["event"] == "request_rejected"]
    assert len(rejected) - before == len(traces)
    for trace in traces:
        assert sum(e.get("trace") == trace for e in events) == 1
    assert shared_server.proc.poll() is None
    stderr = shared_server.output.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in stderr


# --- unit: the encoders -----------------------------------------------------------------

TRICKY = [
    *(chr(code) for code in range(0xA0)),
    "\u2028",
    "\u2029",
    "\ufeff",
    '"',
    '""',
    "\\",
    "\\\\",
    '\\"',
    "a\\",
    "\\x41",
    "\\u2028",
    "\\n",
    "\\",
    "=",
    "k=v",
    "event=stream_end",
    'x" event=stream_end session="y',
    "",
    " ",
    "  lead and trail  ",
    "é",
    "日本語",
    "\U0001f600",
    "x" * 8192,
    "plain-token_1.2:3/4@5+6",
]


def random_values(count: int, seed: int = 20261122) -> list[str]:
    """Deterministic random strings over an alphabet heavy in characters that bite."""
    alphabet = [
        *(chr(c) for c in range(0xA0)),
        "\u2028",
        "\u2029",
        "é",
        "\U0001f600",
        "=",
        '"',
        "\\",
        " ",
        "x",
        "u",
    ]
    rng = random.Random(seed)
    return ["".join(rng.choices(alphabet, k=rng.randint(0, 24))) for _ in range(count)]


VALUES = TRICKY + [f"a{v}b" for v in TRICKY[:0xA0]] + random_values(3000)


def test_format_value_never_emits_a_control_or_line_break_character() -> None:
    """For every tricky value, the logfmt rendering holds no C0, DEL, C1, U+2028 or
    U+2029, so no client value can end a line, whatever reader splits it."""
    for value in VALUES:
        rendered = format_value(value)
        assert not FORBIDDEN.search(rendered), repr(value)
        assert rendered.splitlines() == [rendered]


def test_format_value_is_bare_only_for_plain_tokens() -> None:
    """A value is written bare only when it is made of `A-Za-z0-9_.:/@+-`; anything
    else is quoted, so a space or `=` cannot start a new key."""
    for value in VALUES:
        rendered = format_value(value)
        if not rendered.startswith('"'):
            assert rendered == value
            assert re.fullmatch(r"[A-Za-z0-9_.:/@+\-]+", value), repr(value)


def test_logfmt_line_round_trips_every_value_without_forging_keys() -> None:
    """`parse_logfmt(format_logfmt(...))` gives back exactly the fields written, with the
    hostile value in the middle: the field after it is intact and no key is added."""
    for value in VALUES:
        line = format_logfmt(
            "2026-11-22T00:00:00.000000Z",
            "warning",
            "request_rejected",
            {"trace": "abc", "session": value, "status": 400},
        )
        assert "\n" not in line
        assert "\r" not in line
        assert parse_logfmt(line) == {
            "ts": "2026-11-22T00:00:00.000000Z",
            "level": "warning",
            "event": "request_rejected",
            "trace": "abc",
            "session": bound("session", value),  # whole, or cut past its bound
            "status": "400",
        }, repr(value)


def test_format_value_renders_non_strings_predictably() -> None:
    """Numbers are bare, booleans are `True`/`False`, None is an empty quoted value."""
    assert format_value(400) == "400"
    assert format_value(1.5) == "1.5"
    assert format_value(True) == "True"
    assert format_value(False) == "False"
    assert format_value(None) == '""'
    assert parse_logfmt(f"k={format_value(None)}") == {"k": ""}


def test_lone_surrogate_value_is_escaped_so_the_line_stays_encodable() -> None:
    """A lone surrogate (reachable from JSON `"\\ud800"`) must be escaped like any other
    unprintable character: the line must encode as UTF-8 (or the file writer cannot
    write it) and still round-trip."""
    for value in ["\ud800", "m\udfff", "a\udc80b"]:
        line = format_logfmt("t", "info", "stream_start", {"model": value})
        line.encode("utf-8")
        assert parse_logfmt(line)["model"] == value


def test_json_line_is_one_ascii_line_that_loads_back() -> None:
    """`format_json` writes one ASCII line (no LF, CR or Unicode break) that `json.loads`
    turns back into the same record, `ts`, `level`, `event` first."""
    for value in [*VALUES, "\ud800"]:
        line = format_json("t", "info", "request_rejected", {"session": value, "status": 400})
        assert line.isascii()
        assert line.splitlines() == [line]
        record = json.loads(line)
        assert list(record) == ["ts", "level", "event", "session", "status"]
        assert record["session"] == bound("session", value)
        assert record["status"] == 400
