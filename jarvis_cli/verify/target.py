"""What the server under test offers, found out before any scenario runs.

Which checks can run depends on it: exact text needs the deterministic
embedded model, leak checks need `/v1/streams` or a log, the prober needs a
cheap endpoint. What is missing turns checks into SKIPs, never into passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jarvis.exceptions import ToolError
from jarvis.synthetic import SyntheticModel

from ..exit_codes import ExitCode
from .client import ChatClient

#: The model id of jarvis's deterministic synthetic model.
JARVIS_MODEL = SyntheticModel.name
#: Seconds each discovery request may take.
DISCOVERY_TIMEOUT_S = 3.0


class Unreachable(ToolError):  # noqa: N818 - named for the condition, like httpx's
    """Nothing answers at the target URL."""

    exit_code = ExitCode.UNAVAILABLE


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
        if status == 200:
            probe = path
            break
    if health and probe is None:
        missing.append(f"--health {health} answered HTTP {answered[-1] or 'nothing'}")
    models_path = client.dialect.models_path
    listed: list[str] = []
    if models_path is not None:
        status, body = await client.get_json(models_path, within=DISCOVERY_TIMEOUT_S)
        answered.append(status)
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
        missing.append(
            f"the model: the server lists none; sending {UNKNOWN_MODEL_SENT!r} (name one: --model)"
        )
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
    )


def _asked(health: str | None, models_path: str | None) -> list[str]:
    paths = [health] if health else list(HEALTH_PATHS)
    return paths + ([models_path] if models_path else [])
