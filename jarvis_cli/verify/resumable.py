"""Whether the server offers resume, asked once per run, before any scenario.

A server that resumes holds an answer whose client left for a grace, so that a
reload can reattach: `disconnect` and `leaks` must allow that hold, and `resume`
is run only where there is something to resume. Both rest on what the wire shows:
the events carry `id:` lines, a stream id is named (`X-Stream-Id`, else the events'
data), and `GET --resume-path` with `Last-Event-ID` at the last event of a stream
that has ended answers an event stream (jarvis: an empty 200). The stream probed is
the run's first request, read to its end: a resume of it has nothing left to send,
so the probe cannot reattach a live answer (and detach it again when it leaves).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from ..chatapi import ChatRequest
from .client import ChatClient, Transcript, is_success
from .plan import Plan
from .results import quoted

#: What a server answers at an endpoint it does not have.
NOT_OFFERED = frozenset({404, 405, 501})


@dataclass(frozen=True, slots=True)
class Resumable:
    """What the probe found: `offered` True (it resumes), False (it does not: `why`
    says what showed it), or None (not probed, or the answer told neither way)."""

    offered: bool | None
    #: In words, for evidence: why not, what it answered, or what showed it resumes.
    why: str = ""

    def __repr__(self) -> str:
        return f"<Resumable offered={self.offered} why={self.why!r}>"


#: Before the probe (or without it): nothing is known.
UNKNOWN = Resumable(None, "not asked")


async def probe(client: ChatClient, plan: Plan, first: Transcript) -> Resumable:
    """Ask the resume endpoint for what follows `first`'s last event (`first`: a stream of
    this run that has ended, read whole); bounded by the client's idle bound."""
    if not first.answered:
        return Resumable(None, f"the first request did not stream to an end ({first.ending})")
    why = no_resume(first)
    if why:
        return Resumable(False, why)
    request = endpoint_request(
        client, plan.resume_path, first.stream_id or "", first.session, method="GET"
    )
    request.headers["Last-Event-ID"] = first.last_event_id
    t = Transcript("resume probe", first.session, first.prompt, None, sent_at=0.0)
    t.url = first.url
    # Leave at the first event: an ended stream has none to send, and a live one
    # must not be read on this reader's account.
    answer = await client.send(request, t, until=lambda r: bool(r.event_ids))
    if answer.status in NOT_OFFERED:
        return Resumable(
            False,
            f"the server does not offer resume: {answer.request_line} answered HTTP "
            f"{answer.status} for the stream that had just run ({quoted(answer.body)}); if "
            "it lives elsewhere, name it with --resume-path",
        )
    if is_success(answer.status) and answer.streamed:
        return Resumable(
            True,
            f"{answer.request_line} after event {first.last_event_id} answered HTTP "
            f"{answer.status}, an event stream",
        )
    got = f"HTTP {answer.status}" if answer.status else (answer.error or "no answer")
    return Resumable(
        None, f"{answer.request_line} answered {got}, not an event stream ({quoted(answer.body)})"
    )


def no_resume(t: Transcript) -> str:
    """Why `t` shows the server cannot resume it ("" when it can be tried)."""
    if not t.event_ids:
        return "the server sent no event"
    if not all(t.event_ids):
        return "the server's events carry no ids"
    if not t.stream_id:
        return "the server names no stream id (no X-Stream-Id header, no id in the events)"
    return ""


def endpoint_request(
    client: ChatClient, path: str, stream_id: str, session: str | None, *, method: str
) -> ChatRequest:
    """A request to a resume or stop endpoint, the session where the server reads it (a
    session in the JSON body goes in the body, which only a POST carries)."""
    request = ChatRequest(path.replace("{id}", quote(stream_id, safe="")), {}, method=method)
    if session is not None:
        body: dict[str, object] = {}
        client.session_in.place(
            session,
            headers=request.headers,
            body=body,
            params=request.params,
            cookies=request.cookies,
        )
        if method != "GET":
            request.body.update(body)
    return request
