"""The engine's own busy gauge: does the work stop when the client goes?

A server can end the stream a client sees and still decode the abandoned answer
for seconds (vLLM, Ollama and SGLang users report it; a proxy that forgets to
close its upstream request does it too). Only the engine can tell: its
Prometheus endpoint exposes how many requests it is processing. This module
reads that gauge (`prometheus_client`'s own parser, so any exposition the
official client writes is read as it means it) and waits, bounded, for it to
fall back after the clients left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from jarvis.exceptions import ConfigError

#: Gauges of requests an engine is decoding now, by engine; the first one found is used.
KNOWN_GAUGES: dict[str, str] = {
    "llamacpp:requests_processing": "llama.cpp",
    "vllm:num_requests_running": "vLLM",
    "sglang:num_running_reqs": "SGLang",
    "tgi_batch_current_size": "TGI",
}
#: How often the gauge is read while waiting for it to fall.
POLL_S = 0.02


def read_gauge(text: str, name: str) -> float | None:
    """The gauge's value in Prometheus text (summed over its label sets); None if absent."""
    total: float | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                total = (total or 0.0) + sample.value
    return total


def known_gauge(text: str) -> str | None:
    """The first gauge of `KNOWN_GAUGES` the exposition has."""
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    return next((name for name in KNOWN_GAUGES if name in names), None)


@dataclass(frozen=True, slots=True)
class Idle:
    """How the gauge came back after the clients left."""

    #: True when it fell to the level it had before within the bound.
    idle: bool
    #: Milliseconds from the clients leaving to the gauge falling (or to the bound).
    after_ms: float
    #: The gauge at the end: what is still being processed when not idle.
    value: float


class EngineGauge:
    """One engine's busy gauge at `metrics_url`, read over HTTP."""

    def __init__(
        self,
        metrics_url: str,
        name: str,
        *,
        headers: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = metrics_url
        self.name = name
        self._headers = headers or {}
        self._clock = clock

    def __repr__(self) -> str:
        return f"<EngineGauge {self.name} at {self.url}>"

    @property
    def engine(self) -> str:
        """The engine's name when the gauge is a known one, else the gauge's."""
        return KNOWN_GAUGES.get(self.name, self.name)

    async def read(self, client: httpx.AsyncClient) -> float:
        response = await client.get(self.url, headers=self._headers)
        response.raise_for_status()
        value = read_gauge(response.text, self.name)
        if value is None:
            raise ConfigError(
                f"{self.url} has no gauge {self.name}: name the busy gauge with --busy-gauge"
            )
        return value

    async def wait_idle(
        self,
        client: httpx.AsyncClient,
        *,
        level: float | Callable[[], float],
        since: float,
        bound_s: float,
    ) -> Idle:
        """Poll until the gauge is back at `level` (what it read before the work began),
        at most `bound_s` after `since` (when the clients left, on this clock). `level`
        may be a function, asked at each read: the work the caller still expects (a new
        prompt's own request, while it streams) is not work left over."""
        while True:
            value = await self.read(client)
            elapsed = self._clock() - since
            if value <= (level() if callable(level) else level):
                return Idle(True, elapsed * 1000, value)
            if elapsed >= bound_s:
                return Idle(False, elapsed * 1000, value)
            await asyncio.sleep(POLL_S)


class GaugeWatch:
    """The gauge read every `every` seconds while a run goes on: the most requests the
    engine processed at once, and during which scenario. With more prompts in flight
    than that, it is the engine's number of slots, as observed (never asked)."""

    def __init__(
        self, gauge: EngineGauge, client: httpx.AsyncClient, *, every: float = 0.1
    ) -> None:
        self.gauge = gauge
        self._client = client
        self._every = every
        #: What the run is doing now; the peak is attributed to it.
        self.scenario = "start"
        self.peak: float | None = None
        self.peak_during: str | None = None
        self.reads = 0
        #: Reads that got no value (the endpoint failed or lost the gauge).
        self.failed = 0
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<GaugeWatch {self.gauge.name} peak={self.peak} reads={self.reads}>"

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=1.0)

    async def _watch(self) -> None:
        while True:
            try:
                value = await self.gauge.read(self._client)
            except (httpx.HTTPError, ConfigError, ValueError):
                self.failed += 1
            else:
                self.reads += 1
                if self.peak is None or value > self.peak:
                    self.peak, self.peak_during = value, self.scenario
            await asyncio.sleep(self._every)

    def describe(self) -> str:
        """`llama.cpp (llamacpp:requests_processing at URL): at most 4 requests processing
        at once (first seen during overlap; 120 reads)`."""
        head = f"{self.gauge.engine} ({self.gauge.name} at {self.gauge.url})"
        if self.peak is None:
            return f"{head}: never read ({self.failed} read(s) failed)"
        many = "request" if self.peak == 1 else "requests"
        return (
            f"{head}: at most {self.peak:g} {many} processing at once (first seen during "
            f"{self.peak_during}; {self.reads} reads)"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "engine": self.gauge.engine,
            "gauge": self.gauge.name,
            "metrics_url": self.gauge.url,
            "peak": self.peak,
            "peak_during": self.peak_during,
            "reads": self.reads,
            "failed_reads": self.failed,
        }


async def discover(
    client: httpx.AsyncClient,
    metrics_url: str,
    name: str | None,
    *,
    explicit: bool,
    headers: dict[str, str] | None = None,
) -> EngineGauge | None:
    """The gauge to watch at `metrics_url`: `name` if given, else the first known one.

    None when nothing is there to watch and the URL was only the default guess; a URL or
    gauge the user named that does not answer or lacks the gauge is a usage error.
    """
    gauge, _ = await look(client, metrics_url, name, explicit=explicit, headers=headers)
    return gauge


async def look(
    client: httpx.AsyncClient,
    metrics_url: str,
    name: str | None,
    *,
    explicit: bool,
    headers: dict[str, str] | None = None,
) -> tuple[EngineGauge | None, str]:
    """`discover`, and why there is nothing to watch (in words) when there is not."""
    problem = ""
    try:
        response = await client.get(metrics_url, headers=headers or {})
    except httpx.HTTPError as exc:
        problem = f"GET {metrics_url} got no answer ({type(exc).__name__})"
    else:
        if response.status_code != 200:
            problem = f"GET {metrics_url} answered HTTP {response.status_code}"
    text = response.text if not problem else ""
    try:
        found = name if name is not None else known_gauge(text)
        value = None if found is None else read_gauge(text, found)
    except ValueError:  # not Prometheus text (an HTML page, JSON)
        found = value = None
        problem = problem or f"{metrics_url} is not Prometheus text"
    if found is not None and value is not None:
        return EngineGauge(metrics_url, found, headers=headers), ""
    wanted = name or "busy gauge jarvis knows (" + ", ".join(KNOWN_GAUGES) + ")"
    problem = problem or f"{metrics_url} exposes no {wanted}"
    if explicit or name is not None:
        raise ConfigError(
            f"{problem}: point --engine-metrics at the engine's Prometheus endpoint "
            "(llama.cpp needs --metrics, SGLang --enable-metrics), or name its busy gauge "
            "with --busy-gauge"
        )
    return None, problem
