"""`hostile_input`: session ids a client should never send, sent byte for byte.

Spaces, `=`, quotes, TAB, ESC, 8 KB, and no id at all: each must get a clean
4xx (a complete response) or work (a stream to `[DONE]`); never a 5xx, a
dropped connection or a hang. An HTTP parser may refuse some ids before the
application sees them (uvicorn refuses ESC), so one more request carries a
forged log line in the one request field a server is likely to log, the
model name. With a log, every line written meanwhile must still parse as one
event, each refusal must name the session it refused byte for byte (past the
log's bound on a value, its first characters and its length: `jarvis.logfmt.bound`), and the
forged model must never appear as a line of its own. Only under --strict (jarvis's
contract) must every line parse and each refusal be logged as `request_rejected`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from jarvis.logfmt import bound
from jarvis.vocabulary import Event

from ...chatapi.session import Carrier, set_path
from .. import serverlog, wire
from ..client import Transcript
from ..results import Checks, ScenarioResult, quoted
from .context import SHORT, SHORT_TOKENS, Context, ended, text_is_right

CASES: tuple[tuple[str, bytes], ...] = (
    ("space", b"has space"),
    ("equals", b"key=value"),
    ("quotes", b'say "hi"'),
    ("tab", b"tab\there"),
    ("esc", b"esc\x1b[31mred"),
    ("8kb", b"k" * 8192),
)
#: A model name that, written unescaped, would end the line and forge another event.
FORGED_MODEL = 'm" x=1\n\x1b[2Kts=0 level=info event=stream_end session=forged cleanup_done=True'
#: What a hostile value leaves at the start of a line it splits: a line holding one of
#: these that does not parse as an event is a split (or forged) line.
SPLIT_MARKS = ("here", "[31mred", "value", 'hi"', "x=1", "session=forged")
#: How long the server's log writer may take to write what the requests logged.
LOG_SETTLE_S = 1.0


@dataclass(frozen=True, slots=True)
class Answer:
    name: str
    value: bytes
    status: int
    #: The refusal came from the application (an error body), so it must be logged.
    app_refusal: bool


async def hostile_input(ctx: Context) -> ScenarioResult:
    checks = Checks("hostile_input")
    log_path = ctx.target.log_path
    mark = await asyncio.to_thread(serverlog.size, log_path) if log_path else 0
    forged_session = ctx.session("forged-model")
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(_send(ctx, checks, name, value)) for name, value in CASES]
        missing = group.create_task(
            ctx.client.stream(SHORT, session=None, label="no session id", max_tokens=SHORT_TOKENS)
        )
        forged = group.create_task(
            ctx.client.stream(
                SHORT,
                session=forged_session,
                label="forged model name",
                max_tokens=SHORT_TOKENS,
                model=FORGED_MODEL,
            )
        )
    answers = [a for a in (t.result() for t in tasks) if a is not None]
    for t in (missing.result(), forged.result()):
        _judge_request(checks, ctx, t)
    if log_path is None:
        checks.skip("log lines stay parseable: no server log (pass --log-file)")
    else:
        await _judge_log(checks, ctx.plan.strict, log_path, mark, answers)
    statuses = {a.name: a.status for a in answers}
    statuses["missing"] = missing.result().status
    statuses["forged_model"] = forged.result().status
    refused = sum(1 for s in statuses.values() if 400 <= s < 500)
    summary = (
        f"{len(statuses)} hostile requests: {refused} clean 4xx, "
        f"{len(statuses) - refused} worked; the log stayed one event per line"
    )
    if log_path is None:
        summary = f"{len(statuses)} hostile requests: {refused} clean 4xx, the rest worked"
    return checks.result(summary, {"statuses": statuses})


def _judge_request(checks: Checks, ctx: Context, t: Transcript) -> None:
    """A refusal must be a clean 4xx; an acceptance must stream to the end, intact."""
    if 400 <= t.status < 500:
        checks.confirm()
    elif ended(checks, ctx, t):
        text_is_right(checks, ctx, t)


async def _send(ctx: Context, checks: Checks, name: str, value: bytes) -> Answer | None:
    address = ctx.address(None)
    request = _hostile_request(ctx, address, value)
    try:
        connection = await ctx.connect(address)
    except OSError as exc:
        checks.fail(f"session id {name}: cannot connect: {exc}")
        return None

    async def exchange() -> None:
        await wire.send(connection, request)
        await connection.read_to_end()

    try:
        hung, _ = await ctx.until_idle(exchange(), connection)
    except OSError as exc:
        checks.fail(f"session id {name}: the connection failed: {exc}")
        return None
    finally:
        await connection.close()
    if hung:
        checks.fail(
            f"session id {name}: hung: no byte for {ctx.plan.deadline:g} s, and none on any "
            "other stream of the run meanwhile",
            hang=True,
        )
        return None
    return _judge_answer(checks, ctx, name, value, connection)


def _hostile_request(ctx: Context, address: wire.Address, value: bytes) -> bytes:
    """The request with `value` as its session id, byte for byte where the session
    travels in a header or a cookie (httpx would refuse it), else as JSON or query text."""
    chat = ctx.client.request(SHORT, session=None, max_tokens=SHORT_TOKENS)
    where = ctx.client.session_in
    raw: list[tuple[bytes, bytes]] = []
    text = value.decode("latin-1")
    if where.carrier is Carrier.HEADER:
        raw.append((where.name.encode(), value))
    elif where.carrier is Carrier.COOKIE:
        raw.append((b"Cookie", where.name.encode() + b"=" + value))
    elif where.carrier is Carrier.QUERY:
        chat.params[where.name] = text
    else:
        set_path(chat.body, where.name, text)
    return wire.request_bytes(address, chat, headers=raw, close=True)


def _judge_answer(
    checks: Checks, ctx: Context, name: str, value: bytes, connection: wire.Connection
) -> Answer:
    status = connection.status
    head, _, rest = connection.received.partition(b"\r\n\r\n")
    if 400 <= status < 500:
        checks.confirm()
        app = b'"error"' in rest
        if not app:
            checks.note(f"session id {name}: HTTP {status} from the HTTP layer, before the app")
        return Answer(name, value, status, app_refusal=app)
    if connection.streaming:
        if ctx.plan.strict:
            checks.expect(
                b"data: [DONE]" in rest,
                f"session id {name}: accepted (200) but the stream never reached [DONE]",
            )
        else:
            checks.expect(
                b"data:" in rest, f"session id {name}: accepted (200) but no event arrived"
            )
        return Answer(name, value, status, app_refusal=False)
    what = f"HTTP {status}" if status else "no response at all"
    checks.fail(f"session id {name}: {what}: {quoted(head)}")
    return Answer(name, value, status, app_refusal=False)


async def _judge_log(
    checks: Checks, strict: bool, path: Path, mark: int, answers: list[Answer]
) -> None:
    """No hostile value split a line or forged one. jarvis's contract (--strict) also
    demands that every line parse and that each refusal be logged by its session."""
    refused = {_as_logged(a.value) for a in answers if a.app_refusal} if strict else set()
    lines = await _settled_lines(path, mark, refused)
    for line in lines:
        split = not line.parseable and any(m in line.text for m in SPLIT_MARKS)
        checks.expect(
            not (split or (strict and not line.parseable)),
            f"log line is not one parseable event: {serverlog.clip(line.text)!r}",
            primary=split,
        )
    sessions = {line.fields.get("session") for line in lines}
    checks.expect(
        "forged" not in sessions, "a forged log line (session=forged) was written", primary=True
    )
    if not strict:
        return
    named = _rejected_sessions(lines)
    for answer in answers:
        if answer.app_refusal:
            checks.expect(
                _as_logged(answer.value) in named,
                f"session id {answer.name}: refused, but no request_rejected line names "
                f"{answer.value[:40]!r} exactly",
            )


async def _settled_lines(path: Path, mark: int, refused: set[str]) -> list[serverlog.LogLine]:
    """The lines written since `mark`, once every expected refusal has been logged."""
    loop = asyncio.get_running_loop()
    settle_by = loop.time() + LOG_SETTLE_S
    while True:
        texts = await asyncio.to_thread(serverlog.lines_since, path, mark)
        lines = [serverlog.parse(text) for text in texts]
        if refused <= _rejected_sessions(lines) or loop.time() >= settle_by:
            return lines
        await asyncio.sleep(0.05)


def _as_logged(value: bytes) -> str:
    """A refused session id as jarvis's log names it: whole, or cut past its bound."""
    return str(bound("session", value.decode("latin-1")))


def _rejected_sessions(lines: list[serverlog.LogLine]) -> set[str]:
    return {
        line.fields.get("session", "") for line in lines if line.event == Event.REQUEST_REJECTED
    }
