"""`responsiveness`: the verdict of the prober that ran through every other scenario.

Fails on a probe slower than the threshold, a probe with no answer, or a
stretch with no answer that the server (not this client) caused. A client
too busy to send its probes on time is reported, because a saturated client
distorts what it measures, but it does not fail the server.
"""

from __future__ import annotations

from ..probe import Probe, ProbeLog
from ..results import Checks, ScenarioResult
from .context import ms

MAX_LISTED = 10


def responsiveness(log: ProbeLog | None, *, path: str | None, end: float) -> ScenarioResult:
    checks = Checks("responsiveness")
    if log is None or path is None:
        checks.skip("no cheap endpoint to probe (neither /healthz nor /v1/models answers 200)")
        return checks.result("", {})
    if not log.probes:
        checks.skip("no probe was sent (the run was too short)")
        return checks.result("", {})
    verdict = log.verdict(end)
    limit = ms(log.threshold)

    def at(probe: Probe) -> str:
        where = f" during {probe.scenario}" if probe.scenario else ""
        return f"GET {path} at +{probe.sent - log.started:.2f} s{where}"

    checks.expect(not verdict.failed, f"{len(verdict.failed)} probe(s) got no answer")
    for probe in verdict.failed[:MAX_LISTED]:
        checks.fail(f"{at(probe)}: {probe.error}")
    checks.expect(not verdict.slow, f"{len(verdict.slow)} probe(s) slower than {limit}")
    for probe in verdict.slow[:MAX_LISTED]:
        checks.fail(f"{at(probe)}: answered in {ms(probe.latency or 0.0)} (threshold {limit})")
    for gap in verdict.server_gaps[:MAX_LISTED]:
        checks.fail(
            f"no answer for {ms(gap.seconds)} from +{gap.start - log.started:.2f} s"
            + (f" during {gap.scenario}" if gap.scenario else "")
        )
    stalls = [g for g in verdict.gaps if g.client_stalled]
    if stalls:
        worst = max(g.seconds for g in stalls)
        checks.note(
            f"this client was too busy to probe on time {len(stalls)} time(s) (worst "
            f"{ms(worst)}): its own figures are less reliable there"
        )
    m = verdict.metrics
    summary = (
        f"{m['answered']} probes of {path}: p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, "
        f"max {m['max_ms']} ms (threshold {limit})"
    )
    return checks.result(summary, verdict.metrics)
