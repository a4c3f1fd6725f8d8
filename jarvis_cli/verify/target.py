"""What the server under test offers, found out before any scenario runs.

Which checks can run depends on it: exact text needs the deterministic
embedded model, leak checks need `/v1/streams` or a log, the prober needs a
cheap endpoint. What is missing turns checks into SKIPs, never into passes.

Then one chat request (`first_request`): a server that refuses it for a reason
the user's set-up explains (no credentials, a wrong path or dialect, an answer
that is not a stream) ends the run with `SetupError` (exit 2) naming the request
and what to change, before any scenario could misread the refusal as a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jarvis.exceptions import ToolError
from jarvis.synthetic import SyntheticModel

from ..chatapi.headers import names
from ..exit_codes import ExitCode
from .client import ChatClient, Transcript, is_event_stream, is_success
from .results import quoted

#: The model id of jarvis's deterministic synthetic model.
JARVIS_MODEL = SyntheticModel.name
#: Seconds each discovery request may take.
DISCOVERY_TIMEOUT_S = 3.0


class Unreachable(ToolError):  # noqa: N818 - named for the condition, like httpx's
    """Nothing answers at the target URL."""

    exit_code = ExitCode.UNAVAILABLE


class SetupError(ToolError):
    """The server refuses the run's requests for a reason the set-up explains: fix the
    flags, not the server."""

    exit_code = ExitCode.USAGE


#: Health paths tried, in order, when --health names none.
HEALTH_PATHS = ("/healthz", "/health")
#: The model name sent when the server lists none and --model names none.
UNKNOWN_MODEL_SENT = "default"


@dataclass(slots=True)
class Target:
    """The server under test and what it offers."""

    base_url: str
    #: What is sent as the model; `model_known` says whether the server named it.
    model: str
    model_known: bool
    #: The deterministic synthetic model: exact text can be checked.
    is_jarvis: bool
    #: `GET /v1/streams` answers with live streams by session.
    has_streams: bool
    #: What the prober asks: --health, /healthz, /health or the models list; None: nothing.
    probe_path: str | None
    log_path: Path | None
    embedded: bool
    dialect: str = "openai"
    session_in: str = "header:X-Session-Id"
    urls: list[str] = field(default_factory=list)
    #: What discovery could not find, in words (the banner says it before any scenario).
    missing: list[str] = field(default_factory=list)
    #: What `GET /v1/streams` answered (0: nothing in time), for the skip that says so.
    streams_status: int = 0
    #: The names of the headers every request carries (never their values).
    headers: str = "none"

    @property
    def model_label(self) -> str:
        return self.model if self.model_known else "unknown"

    def detected(self) -> list[str]:
        """The banner: what verify-hang found out and will speak."""
        urls = " + ".join(self.urls) if len(self.urls) > 1 else self.base_url
        where = "embedded server" if self.embedded else "server"
        lines = [
            f"{where} {urls}",
            f"dialect {self.dialect}; session in {self.session_in}; "
            f"health probe {self.probe_path or 'none'}; model {self.model_label}"
            + (" (deterministic: exact text known)" if self.is_jarvis else ""),
        ]
        if self.headers != "none":
            lines.append(f"headers on every request: {self.headers}")
        return lines + [f"skipping: {m}" for m in self.missing]

    def to_json(self) -> dict[str, object]:
        return {
            "url": self.base_url,
            "urls": self.urls or [self.base_url],
            "embedded": self.embedded,
            "dialect": self.dialect,
            "session_in": self.session_in,
            "model": self.model if self.model_known else None,
            "exact_text": self.is_jarvis,
            "streams_endpoint": self.has_streams,
            "headers": self.headers,
            "probe": self.probe_path,
            "log_file": str(self.log_path) if self.log_path else None,
            "missing": self.missing,
        }


def normalise_url(url: str) -> str:
    """`http://host:8000/v1/` and `http://host:8000` name the same server."""
    url = url.rstrip("/")
    return url.removesuffix("/v1")


def _models(body: Any) -> list[str]:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return []
    return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


async def discover(
    client: ChatClient,
    *,
    log_path: Path | None,
    model: str | None,
    embedded: bool,
    health: str | None = None,
) -> Target:
    """Ask the server what it offers; `Unreachable` if it answers nothing at all."""
    answered: list[int] = []
    probe: str | None = None
    missing: list[str] = []
    for path in (health,) if health else HEALTH_PATHS:
        status, _ = await client.get_json(path, within=DISCOVERY_TIMEOUT_S)
        answered.append(status)
        if is_success(status):
            probe = path
            break
    if health and probe is None:
        missing.append(f"--health {health} answered HTTP {answered[-1] or 'nothing'}")
    models_path = client.dialect.models_path
    listed: list[str] = []
    models_status = 0
    if models_path is not None:
        status, body = await client.get_json(models_path, within=DISCOVERY_TIMEOUT_S)
        answered.append(status)
        models_status = status
        listed = _models(body) if status == 200 else []
        if probe is None and status == 200 and not health:
            probe = models_path
    if not any(answered):
        raise Unreachable(
            f"nothing answers at {client.base_url} (GET {', '.join(_asked(health, models_path))})"
        )
    if probe is None:
        missing.append(
            "responsiveness probing: no health path answers 200 (name one: --health PATH)"
        )
    chosen = model or (listed[0] if listed else None)
    if chosen is None:
        why = (
            f"GET {models_path} answered HTTP {models_status}"
            if models_path is not None and models_status not in (0, 200)
            else "the server lists none"
        )
        missing.append(f"the model: {why}; sending {UNKNOWN_MODEL_SENT!r} (name one: --model)")
    streams_status, streams_body = await client.get_json("/v1/streams", within=DISCOVERY_TIMEOUT_S)
    has_streams = (
        streams_status == 200 and isinstance(streams_body, dict) and "sessions" in streams_body
    )
    return Target(
        base_url=client.base_url,
        model=chosen or UNKNOWN_MODEL_SENT,
        model_known=chosen is not None,
        is_jarvis=chosen == JARVIS_MODEL and JARVIS_MODEL in listed,
        has_streams=has_streams,
        probe_path=probe,
        log_path=log_path,
        embedded=embedded,
        dialect=client.dialect.name,
        session_in=str(client.session_in),
        urls=list(client.urls),
        missing=missing,
        streams_status=streams_status,
        headers=names(client.headers),
    )


#: Refusals of the first chat request that the set-up explains, and what to change.
SETUP_STATUSES: dict[int, str] = {
    401: "the server wants credentials: pass --api-key KEY (sent as {auth}) or "
    "--header 'Name: value'",
    403: "the server refuses these credentials: check --api-key and --header",
    404: "nothing is served at that path: check --url (is {base} the server's base URL?), "
    "--dialect, or the path in a --target file",
    405: "that path does not take {method}: check --url, --dialect, or the method and path "
    "in a --target file",
    415: "the server does not read a JSON body there: describe its API with --target FILE.toml",
    422: "the server cannot read the request: check --dialect or the body in a --target file, "
    "--session-in (where the session id goes) and --model",
}


async def first_request(
    client: ChatClient, *, session: str, prompt: str, tokens: int
) -> Transcript:
    """Send one chat request and return it, read to its end; raise `SetupError` when the
    server refuses it for a reason the set-up explains (`SETUP_STATUSES`), or answers with
    something that is not a stream. Anything else (a hang, a 5xx, a broken stream) is left
    to the scenarios to judge."""
    t = await client.stream(prompt, session=session, label="first request", max_tokens=tokens)
    problem = setup_problem(t, client)
    if problem:
        raise SetupError(problem)
    return t


def setup_problem(t: Transcript, client: ChatClient) -> str:
    """What is wrong with the set-up, as `t`'s refusal shows it ("" when nothing is)."""
    if t.hung or not t.status:
        return ""
    head = f"the server refused the first chat request: {t.request_line} answered HTTP {t.status}"
    if t.status in SETUP_STATUSES:
        given = _credentials(client)
        fix = SETUP_STATUSES[t.status].format(
            auth=_auth_example(client), base=client.base_url, method=t.method
        )
        return f"{head} {quoted(t.body)}.\n{fix}" + (f" ({given})" if given else "")
    if is_success(t.status) and not is_event_stream(t.content_type):
        return (
            f"{head} with Content-Type {t.content_type or 'none'!r}, which is not an event "
            f"stream: {quoted(t.body)}.\nThe server did not stream its answer: check --dialect "
            "(openai or anthropic) or describe its streaming API with --target FILE.toml"
        )
    return ""


def _auth_example(client: ChatClient) -> str:
    (name, value), *_ = client.dialect.auth_headers("KEY").items()
    return f"{name}: {value}"


def _credentials(client: ChatClient) -> str:
    sent = names(client.headers)
    return "" if sent == "none" else f"this run sent the headers {sent}"


def _asked(health: str | None, models_path: str | None) -> list[str]:
    paths = [health] if health else list(HEALTH_PATHS)
    return paths + ([models_path] if models_path else [])
