"""What every scenario gets (the plan, the target, a client) and the judgements they share.

A verdict rests on what can be observed on any server: bytes, timing, and
each prompt's natural answer, learnt during the run by streaming the same
prompt in fresh sessions (`..natural`): its very text when the model is
deterministic, else only that it ends with a natural finish and the end
marker. How a cut stream ends (a finish reason of any value, an end marker, an
error event, a plain close) is reported, never judged, unless `--strict` asks
for jarvis's own contract.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from jarvis.synthetic import expected_text

from ..activity import until_idle
from ..client import ChatClient, Transcript
from ..engine import EngineGauge, GaugeWatch
from ..natural import Natural, Naturals
from ..plan import CLEANUP_BOUND_S, RESUMABLE_DETACH_GRACE_S, Plan
from ..results import Checks, quoted
from ..resumable import UNKNOWN, Resumable
from ..target import JARVIS_MODEL, Target
from ..wire import Address, Connection, connect

T = TypeVar("T")

#: The classic manual test: a long answer, then a short question in the same session.
LONG = "Long essay about quantum computing"
SHORT = "What is 2+2?"
#: Long enough to be streaming well past the cancel bound (~1.5 s at the embedded pace).
LONG_TOKENS = 300
SHORT_TOKENS = 16
#: What an inter-chunk gap may exceed the baseline's by before it is a disturbance.
_GAP_FALLBACK_S = 0.1
#: Arrival stamps of two connections may disagree by this much (see `at_once`).
CROSS_GRACE_S = 0.025
#: Characters of a text difference that evidence quotes.
CLIP = 24


@dataclass(slots=True)
class Context:
    """One run's shared state, handed to each scenario in turn."""

    plan: Plan
    target: Target
    client: ChatClient
    run_id: str
    #: Wall-clock start of the run: the log window begins here.
    started_wall: float
    clock: Callable[[], float] = time.monotonic
    #: The baseline stream's largest gap between chunks, once baseline has run.
    baseline_gap: float | None = None
    #: Seconds per token of the baseline stream (its pace on an idle server).
    pace: float | None = None
    #: The baseline stream's time to its first chunk.
    ttft: float | None = None
    #: The server stopped answering: what is left to judge reads only the log.
    hung: bool = False
    #: The engine's busy gauge (`--engine-metrics`), and the client that reads it; None
    #: when there is none to read, `engine_missing` saying why.
    engine: EngineGauge | None = None
    engine_http: httpx.AsyncClient | None = None
    engine_missing: str = ""
    #: The gauge read through the run: the most requests the engine processed at once.
    watch: GaugeWatch | None = None
    #: Whether the server offers resume (`..resumable`), asked once before any scenario.
    resumable: Resumable = UNKNOWN
    #: Each prompt's natural answer, learnt in fresh sessions (not under --strict).
    naturals: Naturals = field(init=False)

    def __post_init__(self) -> None:
        self.naturals = Naturals(
            self.client,
            deadline=self.plan.deadline,
            session=lambda n, i: self.session("nat", n, i),
        )

    @property
    def prefix(self) -> str:
        """Every session of this run starts with it (valid for jarvis's session syntax)."""
        return f"vh-{self.run_id}"

    def session(self, *parts: object) -> str:
        return "-".join([self.prefix, *(str(p) for p in parts)])

    def ours(self, session: str | None) -> bool:
        """Whether a session belongs to this run (the embedded server has nothing else)."""
        return self.target.embedded or (session or "").startswith(self.prefix)

    def address(self, session: str | None = None) -> Address:
        """Where a raw connection for `session` goes (its turn among several URLs)."""
        return Address.of(self.client.url_for(session))

    def expected(self, t: Transcript) -> str | None:
        """The exact text `t` must carry, when the model is the deterministic one."""
        return expected_text(t.prompt, t.max_tokens) if self.target.is_jarvis else None

    async def connect(self, address: Address, *, rcvbuf: int | None = None) -> Connection:
        """A raw connection whose bytes count as the run's progress."""
        return await connect(address, rcvbuf=rcvbuf, activity=self.client.activity)

    async def until_idle(self, work: Awaitable[T], connection: Connection) -> tuple[bool, T | None]:
        """Run `work` on a raw `connection` unless it and every stream of the run sat idle
        for the idle bound (`--deadline`): (hung, its result)."""
        return await until_idle(
            work,
            idle=self.plan.deadline,
            own_last=connection.last_progress,
            activity=self.client.activity,
            clock=self.clock,
        )

    @property
    def grace(self) -> float:
        """Seconds the server may hold an answer whose client left, for a reattach:
        `--detach-grace` as given; else, when it offers resume, jarvis's default (most
        resumable-stream servers hold for seconds to tens of seconds); else none."""
        if self.plan.detach_grace is not None:
            return self.plan.detach_grace
        return RESUMABLE_DETACH_GRACE_S if self.resumable.offered else 0.0

    @property
    def cleanup_bound(self) -> float:
        """How long after its client left a stream may still be live: the grace for a
        reattach, then `CLEANUP_BOUND_S` to end."""
        return self.grace + CLEANUP_BOUND_S

    def grace_words(self) -> str:
        """The bound a dropped answer is held to, as a verdict says it."""
        return f"grace {self.grace:g} s + {CLEANUP_BOUND_S:g} s"

    def budget(self) -> float:
        """The last-resort bound on one scenario: the plan's, plus the time the largest
        scenario's tokens take at the baseline's pace one stream at a time (a server with
        a single slot serves every prompt in turn: slow, never hung), plus what waiting
        out a grace for a reattach takes."""
        serial = self.plan.rounds * self.plan.sessions * (LONG_TOKENS + SHORT_TOKENS)
        # A grace is waited out once by disconnect (then watched an idle bound more when
        # it is overrun) and at most twice by leaks (the live streams, then the log).
        held = 2 * self.cleanup_bound + self.plan.deadline if self.grace else 0.0
        return self.plan.budget() + (self.pace or 0.0) * serial + held

    def gap_limit(self) -> float:
        """The largest inter-chunk gap that still counts as undisturbed."""
        return (self.baseline_gap or _GAP_FALLBACK_S) + self.plan.threshold

    async def stream(
        self, prompt: str, *, session: str | None, label: str, max_tokens: int | None
    ) -> Transcript:
        return await self.client.stream(prompt, session=session, label=label, max_tokens=max_tokens)

    async def live_streams(self, session: str | None = None) -> list[dict[str, object]] | None:
        """Live streams from `GET /v1/streams` (one session, or all of this run's); None if
        the server gives no answer in time."""
        status, body = await self.client.get_json("/v1/streams", within=1.0)
        if status != 200 or not isinstance(body, dict):
            return None
        sessions = body.get("sessions")
        if not isinstance(sessions, dict):
            return None
        live: list[dict[str, object]] = []
        for name, streams in sessions.items():
            if (name == session or (session is None and self.ours(name))) and isinstance(
                streams, list
            ):
                live += [{"session": name, **s} for s in streams if isinstance(s, dict)]
        return live


def intact(checks: Checks, ctx: Context, t: Transcript, *, cut_ok: bool = False) -> bool:
    """The server answered to an end of its choosing, with nothing corrupted: no hang, no
    refusal, no broken connection (unless `cut_ok`), no unreadable event, no other
    stream's chunk. Under --strict also jarvis's terminal chunk and [DONE]."""
    problem = t.problem(strict=ctx.plan.strict, cut_ok=cut_ok)
    ok = checks.expect(not problem, f"{t.describe()}: {problem}", hang=t.hung)
    if t.malformed:
        ok = checks.expect(
            False, f"{t.describe()}: {t.malformed} event(s) are not JSON: corrupted bytes",
            primary=True,
        )  # fmt: skip
    if t.foreign:
        ids = ", ".join(sorted({c.id or "" for c in t.foreign})[:3])
        ok = checks.expect(
            False,
            f"{t.describe()}: {len(t.foreign)} chunk(s) carry another stream's id ({ids}): "
            "corrupted bytes",
            primary=True,
        )
    return ok


def ended(checks: Checks, ctx: Context, t: Transcript) -> bool:
    """A stream that may be cut short (superseded, say) still ended: no hang, no refusal,
    nothing corrupted. Any ending counts, a broken connection too, unless --strict."""
    return intact(checks, ctx, t, cut_ok=not ctx.plan.strict)


async def ran_to_end(checks: Checks, ctx: Context, t: Transcript, *, what: str) -> bool:
    """`t` must have delivered its whole answer. Under --strict: jarvis's `completed` and
    the exact text. Else, when the model is deterministic, the very text a fresh session
    gets (a prefix of it is a lost prompt, anything else corrupted bytes); when it is
    not, a natural finish and the end marker, whatever the length. Failing is primary."""
    if not intact(checks, ctx, t):
        return False
    if ctx.plan.strict:
        ok = checks.expect(
            t.outcome == "completed", f"{t.describe()}: {what}, but it ended {t.outcome}"
        )
        text_is_right(checks, ctx, t)
        return ok
    natural = await ctx.naturals.get(t.prompt, t.max_tokens)
    if natural is not None and natural.deterministic and t.text != natural.text:
        natural = await ctx.naturals.confirm(t.prompt, t.max_tokens)
    if natural is None:
        checks.skip(f"{what}: no fresh session got a complete answer to {t.prompt!r}")
        return True
    if natural.deterministic:
        return _same_text(checks, t, natural, what)
    if not natural.says_complete:
        checks.skip(
            f"{what}: whether {t.prompt!r} was answered in full (the model is not "
            "deterministic, and its fresh answers do not end with a natural finish and "
            "the end marker)"
        )
        return True
    return checks.expect(
        t.complete,
        f"{t.describe()}: {what}, but it ended with {t.ending}, where a fresh session's "
        "answer ends with a natural finish and the end marker",
        primary=True,
    )


def _same_text(checks: Checks, t: Transcript, natural: Natural, what: str) -> bool:
    """A deterministic model's answer: the very text; a prefix of it is a lost prompt,
    anything else corrupted bytes."""
    if t.text == natural.text:
        checks.confirm()
        return True
    if natural.text.startswith(t.text):
        failure = (
            f"it delivered {len(t.text)} of the {natural.chars} characters its prompt gets "
            f"in a fresh session, then ended with {t.ending}"
        )
    else:
        failure = corruption(natural.text, t.text)
    checks.fail(f"{t.describe()}: {what}, but {failure}", primary=True)
    return False


async def text_is_part(checks: Checks, ctx: Context, t: Transcript) -> None:
    """A stream cut short (superseded, say) carries the start of its answer and nothing
    else: when the model is deterministic, its text is a prefix of what a fresh session
    gets, else the bytes are corrupted. Under --strict, jarvis's exact text."""
    if ctx.plan.strict:
        text_is_right(checks, ctx, t, whole=False)
        return
    natural = await ctx.naturals.get(t.prompt, t.max_tokens)
    if natural is not None and natural.deterministic and not natural.text.startswith(t.text):
        natural = await ctx.naturals.confirm(t.prompt, t.max_tokens)
    if natural is None or not natural.deterministic:
        return  # nothing to compare with: never a failure on length or text alone
    ok = natural.text.startswith(t.text)
    checks.expect(
        ok, "" if ok else f"{t.describe()}: {corruption(natural.text, t.text)}", primary=True
    )


def corruption(expected: str, got: str) -> str:
    """What differs between a fresh session's answer and a stream's, in words: a foreign
    prefix, a foreign suffix, or other text, with the first differing characters."""
    if got.endswith(expected) and len(got) > len(expected):
        extra = got[: len(got) - len(expected)]
        return (
            f"corrupted bytes: its text starts with {len(extra)} character(s) that are not "
            f"its answer ({quoted(extra, CLIP)}), then the answer a fresh session gets"
        )
    if got.startswith(expected) and len(got) > len(expected):
        extra = got[len(expected) :]
        return (
            f"corrupted bytes: after the whole answer a fresh session gets, {len(extra)} "
            f"more character(s) ({quoted(extra, CLIP)})"
        )
    return "corrupted bytes: " + _text_diff(
        expected, got, whole=True, what="its text", whose="a fresh session's answer"
    )


def text_is_right(checks: Checks, ctx: Context, t: Transcript, *, whole: bool = True) -> None:
    """Under --strict, the exact text (or, for a stream cut short, a clean prefix of it)."""
    if not ctx.plan.strict:
        return  # the exact text is jarvis's contract; others' text is judged by calibration
    expected = ctx.expected(t)
    if expected is None:
        checks.skip(
            f"exact text: the model is {ctx.target.model_label!r}, not the deterministic "
            f"{JARVIS_MODEL!r}"
        )
        return
    ok = t.text == expected if whole else expected.startswith(t.text)
    checks.expect(ok, "" if ok else f"{t.describe()}: {_text_diff(expected, t.text, whole)}")


def _text_diff(
    expected: str, got: str, whole: bool, what: str = "", whose: str = "the model's"
) -> str:
    at = next((i for i, (x, y) in enumerate(zip(expected, got, strict=False)) if x != y), None)
    at = min(len(expected), len(got)) if at is None else at
    what = what or ("text" if whole else "partial text")
    return (
        f"{what} differs from {whose} at character {at}: expected "
        f"{quoted(expected[at : at + CLIP])}, got {quoted(got[at : at + CLIP])} "
        f"({len(got)} of {len(expected)} characters)"
    )


def at_once(a: Transcript, b: Transcript, grace: float = CROSS_GRACE_S) -> str:
    """Evidence that `a` emitted text after `b`'s first text (two streams of one session
    at once), or "" when it did not. A `b` that only ever ended (superseded in its turn
    before it said anything) never emitted: `a`'s leftover text flushed by its cleanup
    after `b`'s end is not two answers at once.

    Each stream is read on its own connection and stamped when the client's loop gets to
    it, so two events the server wrote in order can arrive stamped a few milliseconds
    the other way round: `grace` absorbs that. A last chunk without text (a finish
    reason) is an ending, not emitting."""
    b_first = next((c.at for c in b.chunks if c.content), None)
    if b_first is None:
        return ""
    after = [c for c in a.chunks_after(b_first + grace) if c.content]
    if not after:
        return ""
    last = ms(after[-1].at - b_first)
    return (
        f"two streams of one session emitting at once: {a.describe()} sent {len(after)} "
        f"chunk(s) of text after the first text of {b.label} {b.stream_id or '<no id>'} "
        f"(the last {last} after it)"
    )


def endings_note(checks: Checks, streams: list[Transcript], what: str) -> None:
    """Say how `what` streams ended: clients must handle each way."""
    ways = sorted({t.ending for t in streams if t.answered})
    if ways:
        checks.note(f"{what} end with {' / '.join(ways)}: clients must handle that")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"
