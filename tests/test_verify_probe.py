"""The responsiveness prober: its judgement over made-up times, and one probe's outcomes."""

from __future__ import annotations

import asyncio

from jarvis_cli.verify.probe import Probe, ProbeLog, Prober
from jarvis_cli.verify.scenarios import responsiveness
from jarvis_cli.verify.timings import quantile


def steady(log: ProbeLog, start: float, count: int, latency: float = 0.005) -> float:
    """`count` probes on schedule every interval from `start`; returns the next due time."""
    due = start
    for _ in range(count):
        log.add(Probe(due, due, latency, scenario="overlap"))
        due += log.interval + latency
    return due


def test_a_steady_fast_server_passes_with_its_percentiles() -> None:
    """Probes all answered under the threshold: ok, with count, p50 and max in ms."""
    log = ProbeLog(started=0.0, threshold=0.25)
    end = steady(log, 0.0, 20, latency=0.004)
    verdict = log.verdict(end)
    assert verdict.ok
    assert verdict.metrics["answered"] == 20
    assert verdict.metrics["p50_ms"] == 4.0
    assert verdict.metrics["max_ms"] == 4.0


def test_one_probe_over_the_threshold_fails_and_is_named() -> None:
    """A single 300 ms answer (threshold 250 ms) makes the verdict fail and lists that probe."""
    log = ProbeLog(started=0.0, threshold=0.25)
    due = steady(log, 0.0, 5)
    log.add(Probe(due, due, 0.3, scenario="burst"))
    steady(log, due + 0.35, 5)
    verdict = log.verdict(due + 1.0)
    assert not verdict.ok
    assert [p.scenario for p in verdict.slow] == ["burst"]
    assert verdict.metrics["max_ms"] == 300.0


def test_a_probe_with_no_answer_fails_and_leaves_a_gap_to_the_end() -> None:
    """A hung server: the probe times out (failed) and the silence runs to the end (a gap)."""
    log = ProbeLog(started=0.0, threshold=0.25)
    due = steady(log, 0.0, 3)
    log.add(Probe(due, due, None, "no answer within 1 s", "overlap"))
    verdict = log.verdict(due + 2.0)
    assert not verdict.ok
    assert len(verdict.failed) == 1
    assert verdict.server_gaps
    assert verdict.server_gaps[-1].end == due + 2.0
    assert log.silent_for(due + 2.0) > 1.9


def test_a_gap_the_client_caused_is_reported_but_does_not_fail() -> None:
    """The probe that ended the gap went out 400 ms late (the client's own loop was busy):
    a client stall, counted in the metrics, not a server failure."""
    log = ProbeLog(started=0.0, threshold=0.25)
    due = steady(log, 0.0, 3)
    log.add(Probe(due, due + 0.4, 0.005, scenario="overlap"))
    verdict = log.verdict(due + 0.45)
    assert verdict.ok
    assert verdict.metrics["client_stalls"] == 1
    assert verdict.metrics["schedule_delay_max_ms"] == 400.0
    result = responsiveness(log, path="/healthz", end=due + 0.45)
    assert result.status == "pass"
    assert any("too busy to probe" in line for line in result.evidence)


def test_responsiveness_is_skipped_when_there_is_nothing_to_probe() -> None:
    """No cheap endpoint: SKIP (never PASS), with the reason."""
    result = responsiveness(None, path=None, end=1.0)
    assert result.status == "skip"
    assert "no cheap endpoint" in result.summary


def test_responsiveness_fails_with_the_unanswered_probe_as_evidence() -> None:
    """A failed probe becomes a FAIL naming the endpoint, the time and the scenario."""
    log = ProbeLog(started=0.0, threshold=0.25)
    log.add(Probe(0.0, 0.0, None, "no answer within 1 s", "overlap"))
    result = responsiveness(log, path="/healthz", end=1.0)
    assert result.status == "fail"
    assert any("GET /healthz at +0.00 s during overlap" in e for e in result.evidence)


async def test_a_probe_that_gets_no_answer_fails_within_its_timeout() -> None:
    """A ping that never returns is cut at the probe timeout and recorded as unanswered."""
    never = asyncio.Event()
    prober = Prober(never.wait, ProbeLog(started=0.0, threshold=0.25), timeout=0.05)
    probe = await asyncio.wait_for(prober.probe_once(0.0), 2.0)
    assert probe.latency is None
    assert probe.error == "no answer within 0.05 s"


async def test_a_probe_whose_ping_raises_is_failed_with_the_error() -> None:
    """Any error of the ping (connection refused, HTTP 500) is a failed probe, not a crash."""

    async def refuse() -> None:
        raise ConnectionRefusedError("refused")

    prober = Prober(refuse, ProbeLog(started=0.0, threshold=0.25), timeout=1.0)
    probe = await prober.probe_once(0.0)
    assert probe.latency is None
    assert probe.error == "ConnectionRefusedError: refused"


async def test_the_prober_probes_until_stopped_and_stops_promptly() -> None:
    """Started, it records probes on its schedule; stop() ends it within its bound."""
    calls = 0

    async def ping() -> None:
        nonlocal calls
        calls += 1

    log = ProbeLog(started=0.0, interval=0.01, threshold=0.25)
    prober = Prober(ping, log, timeout=0.5)
    prober.start()
    while len(log.probes) < 3:
        await asyncio.sleep(0.01)
    await asyncio.wait_for(prober.stop(), 2.0)
    assert calls >= 3
    assert all(p.latency is not None for p in log.probes)
    assert "stopped" in repr(prober)


def test_quantile_is_nearest_rank_and_zero_when_empty() -> None:
    """p50 of 1..4 is 2, p99 is the max, and no values give 0."""
    assert quantile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert quantile([4.0, 1.0, 3.0, 2.0], 0.99) == 4.0
    assert quantile([], 0.5) == 0.0
