"""The engine's busy gauge, read as Prometheus writes it and waited on with a bound."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from jarvis.exceptions import ConfigError
from jarvis_cli.verify.engine import (
    KNOWN_GAUGES,
    EngineGauge,
    GaugeWatch,
    discover,
    known_gauge,
    look,
    read_gauge,
)

VLLM = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="a"} 2.0
vllm:num_requests_running{model_name="b"} 1.0
vllm:num_requests_waiting{model_name="a"} 5.0
"""
LLAMACPP = "llamacpp:requests_processing 1\nllamacpp:requests_deferred 0\n"


def test_a_gauge_is_summed_over_its_label_sets_and_absent_is_none() -> None:
    """vLLM labels its gauge per model: the engine's load is the sum; an absent gauge is
    None, never 0 (0 would read as "idle")."""
    assert read_gauge(VLLM, "vllm:num_requests_running") == 3.0
    assert read_gauge(LLAMACPP, "llamacpp:requests_processing") == 1.0
    assert read_gauge(LLAMACPP, "vllm:num_requests_running") is None


def test_the_known_gauges_are_recognised_in_their_order() -> None:
    """Each engine's gauge is found by name; other metrics are not mistaken for one."""
    assert known_gauge(VLLM) == "vllm:num_requests_running"
    assert known_gauge(LLAMACPP) == "llamacpp:requests_processing"
    assert known_gauge("http_requests_total 3\n") is None
    assert set(KNOWN_GAUGES.values()) == {"llama.cpp", "vLLM", "SGLang", "TGI"}


def _client(texts: list[str]) -> httpx.AsyncClient:
    """A client whose /metrics answers each text in turn, then the last one forever."""

    def handler(request: httpx.Request) -> httpx.Response:
        text = texts.pop(0) if len(texts) > 1 else texts[0]
        return httpx.Response(200, text=text)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


class Clock:
    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def test_wait_idle_reports_when_the_gauge_fell_back() -> None:
    """Busy, busy, idle: idle after the third read, timed by the injected clock."""
    texts = [LLAMACPP, LLAMACPP, "llamacpp:requests_processing 0\n"]
    gauge = EngineGauge("http://e/metrics", "llamacpp:requests_processing", clock=Clock(0.05))
    async with _client(texts) as client:
        idle = await gauge.wait_idle(client, level=0, since=0.0, bound_s=1.0)
    assert idle.idle and idle.value == 0
    assert idle.after_ms == pytest.approx(150)


async def test_wait_idle_gives_up_at_the_bound_with_what_is_still_running() -> None:
    """An engine that keeps decoding: not idle at the bound, and the count still running."""
    gauge = EngineGauge("http://e/metrics", "vllm:num_requests_running", clock=Clock(0.5))
    async with _client([VLLM]) as client:
        idle = await gauge.wait_idle(client, level=0, since=0.0, bound_s=2.0)
    assert not idle.idle and idle.value == 3.0
    assert idle.after_ms >= 2000


async def test_discover_finds_a_known_gauge_or_nothing_at_the_default_url() -> None:
    """At the default guess (<url>/metrics) a server without a known gauge has nothing to
    watch (None); a URL the user named without one is a usage error that says what to do."""
    async with _client([LLAMACPP]) as client:
        found = await discover(client, "http://e/metrics", None, explicit=False)
    assert found is not None and found.engine == "llama.cpp"
    async with _client(["http_requests_total 3\n"]) as client:
        assert await discover(client, "http://e/metrics", None, explicit=False) is None
        with pytest.raises(ConfigError, match="--busy-gauge"):
            await discover(client, "http://e/metrics", None, explicit=True)
        with pytest.raises(ConfigError, match="my:gauge"):
            await discover(client, "http://e/metrics", "my:gauge", explicit=False)


async def test_wait_idle_takes_a_level_that_moves_with_the_expected_work() -> None:
    """A level asked at each read: 1 while a new prompt's own request streams, 0 after;
    a gauge of 1 is idle only while that request is expected."""
    expected = [1, 0, 0]
    gauge = EngineGauge("http://e/metrics", "llamacpp:requests_processing", clock=Clock(0.05))
    texts = ["llamacpp:requests_processing 2\n", "llamacpp:requests_processing 1\n",
             "llamacpp:requests_processing 0\n"]  # fmt: skip
    async with _client(texts) as client:
        idle = await gauge.wait_idle(
            client, level=lambda: expected.pop(0) if len(expected) > 1 else 0, since=0.0,
            bound_s=1.0,
        )  # fmt: skip
    assert idle.idle and idle.value == 0
    assert idle.after_ms == pytest.approx(150)


@pytest.mark.parametrize(
    ("status", "text", "why"),
    [
        (404, "not found", "GET http://e/metrics answered HTTP 404"),
        (200, "<html>hello</html>", "http://e/metrics is not Prometheus text"),
        (200, "http_requests_total 3\n", "http://e/metrics exposes no busy gauge jarvis knows"),
    ],
)
async def test_look_says_why_there_is_no_gauge_at_the_default_url(
    status: int, text: str, why: str
) -> None:
    """At the default guess, nothing to watch comes with its reason (the skip's words);
    the same endpoint named by the user is a usage error with that reason first."""
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(status, text=text))
    )
    async with client:
        gauge, reason = await look(client, "http://e/metrics", None, explicit=False)
        assert gauge is None and reason.startswith(why), reason
        with pytest.raises(ConfigError, match=f"^{why}.*--engine-metrics"):
            await look(client, "http://e/metrics", None, explicit=True)


async def test_the_watch_keeps_the_peak_and_the_scenario_it_was_first_seen_in() -> None:
    """Read through the run: the most requests processing at once, first seen during the
    scenario that was running then; a read that fails is counted, never raised."""
    texts = ["llamacpp:requests_processing 1\n", "llamacpp:requests_processing 4\n"]
    gauge = EngineGauge("http://e/metrics", "llamacpp:requests_processing")
    async with _client(texts) as client:
        watch = GaugeWatch(gauge, client, every=0.001)
        watch.scenario = "overlap"
        watch.start()
        while watch.reads < 3:
            await asyncio.sleep(0.001)
        watch.scenario = "burst"
        await asyncio.sleep(0.01)
        await watch.stop()
    assert watch.peak == 4 and watch.peak_during == "overlap"
    assert watch.describe().startswith(
        "llama.cpp (llamacpp:requests_processing at http://e/metrics): at most 4 requests "
        "processing at once (first seen during overlap;"
    )
