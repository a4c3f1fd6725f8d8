"""What every scenario gets (the plan, the target, a client) and the checks they share."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from jarvis.synthetic import expected_text

from ..client import ChatClient, Transcript
from ..plan import Plan
from ..results import Checks
from ..target import JARVIS_MODEL, Target
from ..wire import Address

#: The seeds' overlap: a long answer, then a short question in the same session.
LONG = "Long essay about quantum computing"
SHORT = "What is 2+2?"
#: Long enough to be streaming well past the cancel bound (~1.5 s at the embedded pace).
LONG_TOKENS = 300
SHORT_TOKENS = 16
#: A superseded stream may end this long after its cancel bound (scheduling, cleanup).
CANCEL_MARGIN_S = 0.5
#: A dropped client's stream must be gone from the server within this.
CLEANUP_BOUND_S = 1.0
#: What an inter-chunk gap may exceed the baseline's by before it is a disturbance.
_GAP_FALLBACK_S = 0.1


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
    #: The server stopped answering: what is left to judge reads only the log.
    hung: bool = False

    @property
    def prefix(self) -> str:
        """Every session of this run starts with it (valid for jarvis's session syntax)."""
        return f"vh-{self.run_id}"

    def session(self, *parts: object) -> str:
        return "-".join([self.prefix, *(str(p) for p in parts)])

    def ours(self, session: str | None) -> bool:
        """Whether a session belongs to this run (the embedded server has nothing else)."""
        return self.target.embedded or (session or "").startswith(self.prefix)

    @property
    def address(self) -> Address:
        return Address.of(self.target.base_url)

    def expected(self, t: Transcript) -> str | None:
        """The exact text `t` must carry, when the model is the deterministic one."""
        return expected_text(t.prompt, t.max_tokens) if self.target.is_jarvis else None

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


def ended_cleanly(checks: Checks, t: Transcript) -> bool:
    """A terminal event and [DONE], no foreign chunk, nothing malformed."""
    problem = t.problem()
    ok = checks.expect(not problem, f"{t.describe()}: {problem}", hang=t.hung)
    if t.malformed:
        ok = checks.expect(False, f"{t.describe()}: {t.malformed} data line(s) are not JSON")
    if t.foreign:
        ids = ", ".join(sorted({c.id or "" for c in t.foreign})[:3])
        ok = checks.expect(
            False, f"{t.describe()}: {len(t.foreign)} chunk(s) carry another stream's id ({ids})"
        )
    return ok


def text_is_right(checks: Checks, ctx: Context, t: Transcript, *, whole: bool = True) -> None:
    """The exact text (or, for a stream cut short, a clean prefix of it)."""
    expected = ctx.expected(t)
    if expected is None:
        checks.skip(
            f"exact text: the model is {ctx.target.model!r}, not the deterministic {JARVIS_MODEL!r}"
        )
        return
    ok = t.text == expected if whole else expected.startswith(t.text)
    checks.expect(ok, "" if ok else f"{t.describe()}: {_text_diff(expected, t.text, whole)}")


def _text_diff(expected: str, got: str, whole: bool) -> str:
    at = next((i for i, (x, y) in enumerate(zip(expected, got, strict=False)) if x != y), None)
    at = min(len(expected), len(got)) if at is None else at
    what = "text" if whole else "partial text"
    return (
        f"{what} differs from the model's at character {at}: expected "
        f"{expected[at : at + 24]!r}, got {got[at : at + 24]!r} "
        f"({len(got)} of {len(expected)} characters)"
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"
