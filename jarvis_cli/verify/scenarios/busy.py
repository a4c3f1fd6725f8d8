"""The judgements of a server that promises `--expect reject` or `--expect queue` for a
prompt arriving while its session streams (`jarvis serve --on-busy reject|queue`).

reject: the new prompt is refused with 409 at once (its answer's head within
`REFUSAL_BOUND_S` of its send), and the running answer goes on untouched: it
delivers its whole answer, the very text of a fresh session when the model is
deterministic. queue: the new prompt sends no text while the running answer
streams; the running answer delivers its whole answer; the new one's first text
comes after the running one's last byte, within `QUEUE_START_BOUND_S` plus the
baseline's time to first chunk, and it then delivers its whole answer too.

A server that does something else fails for what it did: under reject, a prompt
answered while its session streamed (and the running answer cut off, if it was);
under queue, a refusal, or a prompt that streamed beside the running one. A refusal
is read off the status alone, whatever the body says; `Retry-After` is noted when
missing, and required only under --strict.
"""

from __future__ import annotations

from ..client import Transcript
from ..results import Checks, quoted
from .context import Context, at_once, ms, ran_to_end

#: The status of a refused prompt in a busy session (Conflict).
BUSY = 409
#: A refusal comes at once: its response head within this of the request's send.
REFUSAL_BOUND_S = 0.5
#: A queued prompt starts right after the running answer ends: its first text within
#: this (plus the baseline's time to first chunk) of the running answer's last byte.
QUEUE_START_BOUND_S = 0.5


def refused(t: Transcript) -> bool:
    """The server refused `t` because its session was busy: a 409."""
    return t.status == BUSY and not t.hung


def refusal_ok(checks: Checks, ctx: Context, t: Transcript, *, running: Transcript | None) -> bool:
    """`t`, sent into a busy session, was refused with 409 at once. Anything else fails,
    named for what it was: answered while `running` streamed, another status, a hang."""
    beside = f" while {running.describe()} streamed in its session" if running else ""
    if t.hung:
        checks.fail(
            f"{t.describe()}: hung: no byte for {t.idle_s:g} s, and none on any other stream "
            "of the run meanwhile; a prompt in a busy session must be refused at once",
            hang=True,
        )
        return False
    if not refused(t):
        if t.streamed:
            what = f"answered (HTTP {t.status}, {len(t.text)} characters){beside}"
            if running is not None and _after(t, running):
                what += f", once {running.label} had ended (the server queues: --expect queue)"
        else:
            what = f"refused with HTTP {t.status or 'error'}, not {BUSY}: {quoted(t.body)}"
        checks.fail(
            f"{t.describe()}: {what}: a prompt in a busy session must be refused with {BUSY} "
            "(--expect reject)",
            primary=True,
        )
        return False
    answered_at = t.headers_at if t.headers_at is not None else t.ended_at or t.sent_at
    late = answered_at - t.sent_at
    ok = checks.expect(
        late <= REFUSAL_BOUND_S,
        f"{t.describe()}: refused with {BUSY}, but {ms(late)} after it was sent: a refusal "
        f"comes at once (bound {ms(REFUSAL_BOUND_S)}); a server that waits first queues",
    )
    if not t.retry_after:
        if ctx.plan.strict:
            ok = checks.expect(False, f"{t.describe()}: a {BUSY} without Retry-After") and ok
        else:
            checks.note(f"{BUSY} refusals carry no Retry-After: clients cannot tell when to retry")
    return ok


async def judge_reject(checks: Checks, ctx: Context, a: Transcript, b: Transcript) -> None:
    """B arrived while A streamed: B refused at once, A whole."""
    refusal_ok(checks, ctx, b, running=a)
    crossed = at_once(a, b)
    checks.expect(not crossed, crossed, primary=True)
    await ran_to_end(checks, ctx, a, what=f"it must run on untouched while {b.label} is refused")


async def judge_queue(checks: Checks, ctx: Context, a: Transcript, b: Transcript) -> None:
    """B arrived while A streamed: A whole, then B whole, B's first text after A's end."""
    if refused(b):
        checks.fail(
            f"{b.describe()}: refused with {BUSY} {ms(_answered(b) - b.sent_at)} after it was "
            f"sent, while {a.describe()} streamed: a queued prompt must wait for the running "
            "answer to end, then stream (--expect queue)",
            primary=True,
        )
    crossed = at_once(a, b)
    checks.expect(not crossed, crossed, primary=True)
    await ran_to_end(checks, ctx, a, what=f"it must run on untouched while {b.label} waits")
    if refused(b):
        return
    if await ran_to_end(checks, ctx, b, what="a queued prompt answers once its turn comes"):
        starts_after(checks, ctx, a, b)


def starts_after(checks: Checks, ctx: Context, before: Transcript, after: Transcript) -> None:
    """`after` (queued behind `before`) began its text right after `before` ended."""
    ended = before.last_byte_at or before.ended_at
    first = after.first_text_at
    if ended is None or first is None:
        return
    gap = first - ended
    bound = QUEUE_START_BOUND_S + (ctx.ttft or 0.0)
    checks.expect(
        gap <= bound,
        f"{after.describe()}: its first text came {ms(gap)} after {before.describe()} "
        f"ended; a queued prompt starts right after the answer ahead of it (bound {ms(bound)})",
    )


def _after(t: Transcript, running: Transcript) -> bool:
    """`t`'s first text came after `running`'s last byte (it was held, then answered)."""
    first, last = t.first_text_at, running.last_byte_at
    return first is not None and last is not None and first >= last


def _answered(t: Transcript) -> float:
    return t.headers_at if t.headers_at is not None else t.ended_at or t.sent_at
