"""What the server under test offers, found out before any scenario runs.

Which checks can run depends on it: exact text needs the deterministic
embedded model, leak checks need `/v1/streams` or a log, the prober needs a
cheap endpoint. What is missing turns checks into SKIPs, never into passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jarvis.exceptions import ToolError
from jarvis.synthetic import SyntheticModel

from .client import ChatClient

#: The model id of jarvis's deterministic synthetic model.
JARVIS_MODEL = SyntheticModel.name
#: Seconds each discovery request may take.
DISCOVERY_TIMEOUT_S = 3.0


class Unreachable(ToolError):  # noqa: N818 - named for the condition, like httpx's
    """Nothing answers at the target URL."""


@dataclass(slots=True)
class Target:
    """The server under test and what it offers."""

    base_url: str
    model: str
    #: The deterministic synthetic model: exact text can be checked.
    is_jarvis: bool
    #: `GET /v1/streams` answers with live streams by session.
    has_streams: bool
    #: What the prober asks: /healthz, or /v1/models for servers without it.
    probe_path: str | None
    log_path: Path | None
    embedded: bool

    def to_json(self) -> dict[str, object]:
        return {
            "url": self.base_url,
            "embedded": self.embedded,
            "model": self.model,
            "exact_text": self.is_jarvis,
            "streams_endpoint": self.has_streams,
            "probe": self.probe_path,
            "log_file": str(self.log_path) if self.log_path else None,
        }


def normalise_url(url: str) -> str:
    """`http://host:8000/v1/` and `http://host:8000` name the same server."""
    url = url.rstrip("/")
    return url.removesuffix("/v1")


def _first_model(body: Any) -> list[str]:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return []
    return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


async def discover(
    client: ChatClient, *, log_path: Path | None, model: str | None, embedded: bool
) -> Target:
    """Ask the server what it offers; `Unreachable` if it answers nothing at all."""
    health, _ = await client.get_json("/healthz", within=DISCOVERY_TIMEOUT_S)
    models_status, models_body = await client.get_json("/v1/models", within=DISCOVERY_TIMEOUT_S)
    if health == 0 and models_status == 0:
        raise Unreachable(f"nothing answers at {client.base_url} (GET /healthz, /v1/models)")
    models = _first_model(models_body) if models_status == 200 else []
    chosen = model or (models[0] if models else JARVIS_MODEL)
    streams_status, streams_body = await client.get_json("/v1/streams", within=DISCOVERY_TIMEOUT_S)
    has_streams = (
        streams_status == 200 and isinstance(streams_body, dict) and "sessions" in streams_body
    )
    probe = "/healthz" if health == 200 else "/v1/models" if models_status == 200 else None
    return Target(
        base_url=client.base_url,
        model=chosen,
        is_jarvis=chosen == JARVIS_MODEL and JARVIS_MODEL in models,
        has_streams=has_streams,
        probe_path=probe,
        log_path=log_path,
        embedded=embedded,
    )
