"""The responsiveness prober: a cheap request every 50 ms for the whole run.

A server whose event loop is blocked stops answering even `/healthz`; a
prober that keeps asking while the scenarios run sees it within one probe.
The judgement (`ProbeLog.verdict`) is pure over recorded times, so it is
tested with made-up clocks. A probe sent late by the client itself (its own
loop was busy: the "schedule delay" inference-perf reports) is the client's
fault, not the server's, and is reported as such rather than failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .timings import summary_ms

#: Seconds between probes.
INTERVAL_S = 0.05


@dataclass(frozen=True, slots=True)
class Probe:
    """One probe: when it was due, when it went out, and how long the answer took."""

    due: float
    sent: float
    #: Seconds from send to answer; None when there was no answer (error or timeout).
    latency: float | None
    error: str | None = None
    #: The scenario running when the probe was sent.
    scenario: str = ""

    @property
    def answered_at(self) -> float | None:
        return None if self.latency is None else self.sent + self.latency

    @property
    def schedule_delay(self) -> float:
        return max(0.0, self.sent - self.due)


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch with no answer longer than one interval plus the threshold."""

    start: float
    end: float
    #: The client itself was late sending the probe that closed the gap.
    client_stalled: bool
    scenario: str

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(slots=True)
class ProbeVerdict:
    """What the probes of a run show, and whether the server stayed responsive."""

    metrics: dict[str, object]
    slow: list[Probe] = field(default_factory=list)
    failed: list[Probe] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    @property
    def server_gaps(self) -> list[Gap]:
        return [g for g in self.gaps if not g.client_stalled]

    @property
    def ok(self) -> bool:
        return not (self.slow or self.failed or self.server_gaps)


class ProbeLog:
    """Every probe of a run, and the judgement over them."""

    def __init__(self, *, started: float, interval: float = INTERVAL_S, threshold: float) -> None:
        self.started = started
        self.interval = interval
        self.threshold = threshold
        self.probes: list[Probe] = []

    def __repr__(self) -> str:
        return f"<ProbeLog probes={len(self.probes)} threshold={self.threshold * 1000:.0f}ms>"

    def add(self, probe: Probe) -> None:
        self.probes.append(probe)

    def last_answer(self) -> float:
        """When the server last answered (the start of the run if it never did)."""
        answers = (p.answered_at for p in self.probes if p.answered_at is not None)
        return max(answers, default=self.started)

    def silent_for(self, now: float) -> float:
        """Seconds since the server last answered a probe."""
        return now - self.last_answer()

    def verdict(self, end: float) -> ProbeVerdict:
        answered = [p for p in self.probes if p.latency is not None]
        latencies = [p.latency for p in answered if p.latency is not None]
        verdict = ProbeVerdict(
            metrics={
                "probes": len(self.probes),
                "answered": len(answered),
                **summary_ms(latencies),
                "threshold_ms": round(self.threshold * 1000),
                "schedule_delay_max_ms": round(
                    max((p.schedule_delay for p in self.probes), default=0.0) * 1000, 1
                ),
            },
            slow=[p for p in answered if p.latency is not None and p.latency > self.threshold],
            failed=[p for p in self.probes if p.latency is None],
        )
        verdict.gaps = self._gaps(end)
        verdict.metrics["gaps"] = len(verdict.server_gaps)
        verdict.metrics["client_stalls"] = len(verdict.gaps) - len(verdict.server_gaps)
        return verdict

    def _gaps(self, end: float) -> list[Gap]:
        limit = self.interval + self.threshold
        gaps: list[Gap] = []
        previous, previous_scenario = self.started, ""
        for probe in sorted(self.probes, key=lambda p: p.sent):
            answered = probe.answered_at
            if answered is None:
                continue
            if answered - previous > limit:
                stalled = probe.schedule_delay > self.threshold
                gaps.append(Gap(previous, answered, stalled, probe.scenario or previous_scenario))
            previous, previous_scenario = max(previous, answered), probe.scenario
        if self.probes and end - previous > limit:
            # Still silent at the end: only the server can explain that.
            gaps.append(Gap(previous, end, False, self.probes[-1].scenario))
        return gaps


class Prober:
    """Sends one probe every interval (never two at once) until stopped."""

    def __init__(
        self,
        ping: Callable[[], Awaitable[object]],
        log: ProbeLog,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        on_probe: Callable[[Probe], None] | None = None,
    ) -> None:
        self._ping = ping
        self.log = log
        self._timeout = timeout
        self._clock = clock
        self._on_probe = on_probe
        self._task: asyncio.Task[None] | None = None
        #: Set by the runner: which scenario each probe belongs to.
        self.scenario = ""

    def __repr__(self) -> str:
        state = "running" if self._task is not None and not self._task.done() else "stopped"
        return f"<Prober {state} {self.log!r}>"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="verify-hang:prober")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.wait({self._task}, timeout=self._timeout + 1.0)
        self._task = None

    async def _run(self) -> None:
        due = self._clock()
        while True:
            probe = await self.probe_once(due)
            self.log.add(probe)
            if self._on_probe is not None:
                self._on_probe(probe)
            # A probe that overran the interval restarts the schedule: no catch-up burst,
            # and the next probe's schedule delay measures only this client's own loop.
            due = max(due + self.log.interval, self._clock())
            await asyncio.sleep(due - self._clock())

    async def probe_once(self, due: float) -> Probe:
        scenario = self.scenario
        sent = self._clock()
        try:
            async with asyncio.timeout(self._timeout):
                await self._ping()
        except TimeoutError:
            return Probe(due, sent, None, f"no answer within {self._timeout:g} s", scenario)
        except Exception as exc:  # any failure of the ping is a failed probe, whatever it is
            return Probe(due, sent, None, f"{type(exc).__name__}: {exc}", scenario)
        return Probe(due, sent, self._clock() - sent, None, scenario)
