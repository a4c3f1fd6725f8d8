"""One verify run: start (or find) the server, run the scenarios under the prober, judge.

Scenarios run one after another in a fixed order while the prober asks the
server for `/healthz` every 50 ms. When a scenario hung and the prober has
not heard from the server for a second either, the server is hung: its
stacks are captured (embedded server only), the scenarios not yet run are
reported as not run, and only `leaks` still reads the log. A hung server
thus costs one deadline, not one per scenario.

The embedded server may be a fleet (`Spec.workers`): one URL, several
processes, one log file per worker; every scenario reads them all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from jarvis.exceptions import ConfigError

from ..chatapi import Dialect, SessionIn
from ..chatapi.dialect import OpenAI
from ..chatapi.headers import Header
from ..chatapi.session import DEFAULT_SESSION_IN
from . import engine, resumable, serverlog
from .client import ChatClient, is_success
from .embedded import EmbeddedServer, start_embedded
from .plan import Plan
from .probe import Probe, ProbeLog, Prober
from .results import ScenarioResult, Status
from .scenarios import RUNNABLE, Context, responsiveness
from .scenarios.baseline import PROMPT as BASELINE
from .scenarios.baseline import TOKENS as BASELINE_TOKENS
from .scenarios.burst import PROMPT as BURST
from .scenarios.burst import TOKENS as BURST_TOKENS
from .scenarios.context import LONG, LONG_TOKENS, SHORT, SHORT_TOKENS
from .target import JARVIS_MODEL, SetupError, Target, discover, first_request, normalise_url

#: The prober's silence (seconds) that, after a scenario hung, means the server is hung.
HUNG_SILENCE_S = 1.0
#: A probe with no answer after this long is a failed probe.
PROBE_TIMEOUT_S = 1.0
#: Judged after the others, from what the run left behind.
_AFTERWARDS = ("responsiveness", "leaks")
#: With `--scenario responsiveness` alone, how long the prober watches an idle server.
IDLE_PROBING_S = 1.0
#: Seconds one read of the engine's metrics may take.
ENGINE_TIMEOUT_S = 2.0
#: Scenarios that start no fresh-session calibration: baseline's pace comes first,
#: work_stops needs an engine that nothing else of the run is loading, and leaks judges
#: no text (it runs after the calibration has stopped: one started then would outlive
#: the run's client, and its streams would be live while leaks counts them).
_UNCALIBRATED = ("baseline", "work_stops", "leaks")


class View(Protocol):
    """What the runner reports as it goes (a live table, plain lines, or nothing)."""

    def target(self, target: Target) -> None: ...

    def started(self, name: str) -> None: ...

    def finished(self, result: ScenarioResult) -> None: ...

    def probe(self, probe: Probe) -> None: ...


@dataclass(frozen=True, slots=True)
class Spec:
    """Which server to test, and how to speak to it: the embedded one (no `urls`), or
    one or more URLs (replicas: a session's prompts take turns among them)."""

    urls: tuple[str, ...] = ()
    log_file: Path | None = None
    faults: tuple[str, ...] = ()
    #: The embedded server's worker processes (above 1: a fleet sharing `registry`).
    workers: int = 1
    registry: str | None = None
    model: str | None = None
    api_key: str | None = None
    #: `--header`s, on every request (the API key's header comes first; these win).
    headers: tuple[Header, ...] = ()
    dialect: Dialect = field(default_factory=OpenAI)
    session_in: SessionIn = DEFAULT_SESSION_IN
    health: str | None = None
    #: `--engine-metrics`: the engine's Prometheus endpoint (None: `<url>/metrics`, if it
    #: has a known gauge); `--busy-gauge`: the gauge to read there.
    engine_metrics: str | None = None
    busy_gauge: str | None = None
    #: `--max-tokens`: no prompt asks for more.
    max_tokens: int | None = None


@dataclass(slots=True)
class RunResult:
    """Everything a report needs."""

    target: Target
    results: list[ScenarioResult]
    started_wall: float
    seconds: float = 0.0
    #: The scenario during which the server hung, if it did, and where it was stuck.
    hung_during: str | None = None
    stacks: list[str] = field(default_factory=list)
    #: How long the server had not answered a probe when the hang was declared: the
    #: time from the hang to the verdict.
    silent_s: float | None = None
    #: The embedded server's pid, log, stderr, faults and exit code.
    server: dict[str, object] = field(default_factory=dict)
    #: The engine's busy gauge over the run (`engine.GaugeWatch`), when there is one.
    engine: dict[str, object] | None = None
    #: Whether the server offers resume (`resumable.probe`) and the grace a dropped
    #: answer was allowed for a reattach.
    resume: dict[str, object] | None = None


async def run(
    plan: Plan, spec: Spec, view: View, *, clock: Callable[[], float] = time.monotonic
) -> RunResult:
    """Run `plan` against `spec`; raises ServerStartError or Unreachable before any scenario."""
    started, started_wall = clock(), time.time()
    server = None
    if not spec.urls:
        server = await start_embedded(
            log_path=spec.log_file,
            cancel_wait=plan.cancel_wait,
            detach_grace=plan.detach_grace,
            faults=list(spec.faults),
            workers=spec.workers,
            registry=spec.registry,
            on_busy=plan.expect.on_busy,
        )
    urls = [server.url] if server is not None else [normalise_url(u) for u in spec.urls]
    client = ChatClient(
        urls,
        model=spec.model or JARVIS_MODEL,
        deadline=plan.deadline,
        dialect=spec.dialect,
        session_in=spec.session_in,
        api_key=spec.api_key,
        headers=spec.headers,
        max_tokens=spec.max_tokens,
    )
    outcome: RunResult | None = None
    engine_http = httpx.AsyncClient(timeout=ENGINE_TIMEOUT_S)
    try:
        target = await discover(
            client,
            log_path=server.log_path if server is not None else spec.log_file,
            model=spec.model,
            embedded=server is not None,
            health=spec.health,
        )
        client.model = target.model
        view.target(target)
        ctx = Context(plan, target, client, secrets.token_hex(3), started_wall, clock)
        # A refusal the set-up explains (401, 404, no stream...) ends the run here, exit 2.
        first = await first_request(
            client, session=ctx.session("first"), prompt=SHORT, tokens=SHORT_TOKENS
        )
        # Once, for every scenario: a server that resumes holds a dropped answer a while.
        ctx.resumable = await resumable.probe(client, plan, first)
        ctx.engine_http = engine_http
        ctx.engine, ctx.engine_missing = await _engine_gauge(spec, ctx, embedded=server is not None)
        outcome = RunResult(target, [], started_wall)
        outcome.resume = {
            "offered": ctx.resumable.offered,
            "why": ctx.resumable.why,
            "detach_grace_s": ctx.grace,
        }
        if ctx.engine is not None:
            ctx.watch = engine.GaugeWatch(ctx.engine, engine_http)
            ctx.watch.start()
        try:
            await _scenarios(ctx, server, view, outcome)
        finally:
            if ctx.watch is not None:
                await ctx.watch.stop()
                outcome.engine = {**ctx.watch.to_json(), "summary": ctx.watch.describe()}
    finally:
        await client.aclose()
        await engine_http.aclose()
        if server is not None:
            code = await server.stop(hung=outcome is not None and outcome.hung_during is not None)
            if outcome is not None:
                outcome.server = _server_info(server, spec, code)
    outcome.seconds = clock() - started
    return outcome


async def _engine_gauge(
    spec: Spec, ctx: Context, *, embedded: bool
) -> tuple[engine.EngineGauge | None, str]:
    """The engine's busy gauge: at --engine-metrics (which must have it: else SetupError,
    exit 2), or at `<url>/metrics` if that has a known one; else None and why not."""
    assert ctx.engine_http is not None
    url = spec.engine_metrics or f"{ctx.target.base_url}/metrics"
    # The server's own credentials go to the server only, never to another host.
    same = httpx.URL(url).netloc == httpx.URL(ctx.target.base_url).netloc
    try:
        gauge, why = await engine.look(
            ctx.engine_http,
            url,
            spec.busy_gauge,
            explicit=spec.engine_metrics is not None,
            headers=ctx.client.headers if same else None,
        )
    except ConfigError as exc:
        raise SetupError(str(exc)) from None
    if gauge is not None:
        return gauge, ""
    if embedded:
        return None, "the embedded server has no inference engine to watch (its model is synthetic)"
    return None, (
        f"no busy gauge to read: {why}; pass the engine's own with --engine-metrics "
        "http://ENGINE/metrics (behind a proxy, the engine's, not the proxy's)"
    )


async def _scenarios(
    ctx: Context, server: EmbeddedServer | None, view: View, outcome: RunResult
) -> None:
    plan, target = ctx.plan, ctx.target
    probe_log = ProbeLog(started=ctx.clock(), threshold=plan.threshold)
    prober: Prober | None = None

    # Its own connection: a probe must never queue behind the scenarios' streams.
    probe_http = httpx.AsyncClient(
        base_url=target.base_url, headers=ctx.client.headers, timeout=PROBE_TIMEOUT_S + 1.0
    )
    if target.probe_path is not None:
        prober = Prober(
            _ping(probe_http, target.probe_path),
            probe_log,
            timeout=PROBE_TIMEOUT_S,
            clock=ctx.clock,
            on_probe=view.probe,
        )
        prober.start()
    try:
        for name in plan.scenarios:
            if name in _AFTERWARDS:
                continue
            if outcome.hung_during is not None:
                _record(view, outcome, _not_run(name, outcome.hung_during))
                continue
            _now_running(name, prober, ctx.watch)
            result = await _run_one(ctx, name, view)
            gone = server is not None and server.proc.returncode is not None
            if gone or (result.hung and await _server_hung(ctx, prober, server)):
                outcome.hung_during = name
                if prober is not None:
                    outcome.silent_s = round(prober.log.silent_for(ctx.clock()), 3)
                outcome.stacks = await _stacks(server, ctx.target.log_path, ctx.started_wall)
                result.evidence += outcome.stacks
            _record(view, outcome, result)
        if prober is not None and all(name in _AFTERWARDS for name in plan.scenarios):
            prober.scenario = "idle"
            await asyncio.sleep(IDLE_PROBING_S)
    finally:
        await ctx.naturals.stop()
        if prober is not None:
            await prober.stop()
        await probe_http.aclose()
    if "responsiveness" in plan.scenarios:
        view.started("responsiveness")
        judged = responsiveness(
            probe_log if prober else None, path=target.probe_path, end=ctx.clock()
        )
        _record(view, outcome, judged)
    if "leaks" in plan.scenarios:
        ctx.hung = outcome.hung_during is not None
        _record(view, outcome, await _run_one(ctx, "leaks", view))


def _now_running(name: str, *watchers: Prober | engine.GaugeWatch | None) -> None:
    """Tell the prober and the gauge's watch what the run is doing (their figures say)."""
    for watcher in watchers:
        if watcher is not None:
            watcher.scenario = name


def _calibrate(ctx: Context) -> None:
    """Learn the natural answers of the prompts the scenarios send, in fresh sessions,
    while the first scenarios run (once; later calls find them started)."""
    for prompt, tokens in (
        (LONG, LONG_TOKENS),
        (SHORT, SHORT_TOKENS),
        (BURST, BURST_TOKENS),
        (BASELINE, BASELINE_TOKENS),
    ):
        ctx.naturals.calibrate(prompt, tokens)


def _record(view: View, outcome: RunResult, result: ScenarioResult) -> None:
    outcome.results.append(result)
    view.finished(result)


async def _run_one(ctx: Context, name: str, view: View) -> ScenarioResult:
    if name not in _UNCALIBRATED and not ctx.plan.strict:
        _calibrate(ctx)
    view.started(name)
    began = ctx.clock()
    budget = ctx.budget()
    scenario = _leaks_per_file if name == "leaks" else RUNNABLE[name]
    try:
        async with asyncio.timeout(budget):
            result = await scenario(ctx)
    except TimeoutError:
        result = out_of_budget(ctx, name, budget)
    result.seconds = ctx.clock() - began
    return result


def out_of_budget(ctx: Context, name: str, budget: float) -> ScenarioResult:
    """A scenario that ran past its budget: hung if the server had gone quiet on every
    stream for the idle bound, else slow (bytes were still arriving), which is a failure
    of this run to finish, never a hang."""
    quiet = ctx.client.activity.quiet_for(ctx.clock())
    if quiet >= ctx.plan.deadline:
        return ScenarioResult(
            name,
            Status.FAIL,
            f"hang: the scenario did not finish within {budget:g} s, and no stream has "
            f"received a byte for {quiet:.1f} s",
            hung=True,
        )
    return ScenarioResult(
        name,
        Status.FAIL,
        f"slow, not hung: the scenario did not finish within its budget of {budget:g} s, "
        f"though the server was still streaming (its last byte {quiet * 1000:.0f} ms ago); "
        "fewer --sessions or --rounds finish sooner",
    )


async def _leaks_per_file(ctx: Context) -> ScenarioResult:
    """`leaks` judges one log file. A fleet's log is one file per worker, and each holds
    whole lifecycles (a stream starts and ends in the worker that runs it), so each file
    is judged in turn, and a leak in any fails the scenario."""
    target = ctx.target
    log_files = await asyncio.to_thread(serverlog.files, target.log_path) if target.log_path else []
    if len(log_files) < 2:
        return await RUNNABLE["leaks"](ctx)
    parts: list[tuple[Path, ScenarioResult]] = []
    try:
        for path in log_files:
            ctx.target = dataclasses.replace(target, log_path=path)
            parts.append((path, await RUNNABLE["leaks"](ctx)))
    finally:
        ctx.target = target
    return _joined("leaks", parts)


def _joined(name: str, parts: list[tuple[Path, ScenarioResult]]) -> ScenarioResult:
    """One verdict from a scenario run once per log file: FAIL if any failed, PASS if any
    passed, else SKIP; every summary, metric and evidence line names its file."""
    statuses = {result.status for _, result in parts}
    status = next(s for s in (Status.FAIL, Status.PASS, Status.SKIP) if s in statuses)
    shown = [(p, r) for p, r in parts if r.status is status]
    return ScenarioResult(
        name,
        status,
        "; ".join(f"{path.name}: {result.summary}" for path, result in shown),
        metrics={path.name: result.metrics for path, result in parts},
        evidence=[f"{path.name}: {line}" for path, result in parts for line in result.evidence],
        hung=any(result.hung for _, result in parts),
    )


def _not_run(name: str, hung_during: str) -> ScenarioResult:
    return ScenarioResult(
        name, Status.SKIP, f"not run: the server stopped answering during {hung_during}"
    )


def _ping(http: httpx.AsyncClient, path: str) -> Callable[[], Awaitable[None]]:
    async def ping() -> None:
        response = await http.get(path)
        if not is_success(response.status_code):
            raise httpx.HTTPStatusError(
                f"HTTP {response.status_code}", request=response.request, response=response
            )

    return ping


async def _server_hung(ctx: Context, prober: Prober | None, server: EmbeddedServer | None) -> bool:
    """After a scenario hung: is the server itself stuck (or gone)?"""
    if server is not None and server.proc.returncode is not None:
        return True
    # A fleet's probes reach whichever worker took their connection: one whose loop is
    # free answers for the whole fleet. The workers' own watchdogs speak for each.
    if server is not None and server.workers > 1 and await server.loop_blocked():
        return True
    if prober is not None:
        return prober.log.silent_for(ctx.clock()) >= HUNG_SILENCE_S
    status, _ = await ctx.client.get_json(
        ctx.target.probe_path or "/healthz", within=HUNG_SILENCE_S
    )
    return status == 0


async def _stacks(server: EmbeddedServer | None, log_path: Path | None, since: float) -> list[str]:
    if server is None:
        if log_path is not None:  # its own watchdog's word, from --log-file
            return await asyncio.to_thread(serverlog.loop_blocked_stacks, log_path, since)
        return ["stacks: not captured (the server is not this run's own process; "
                "--log-file gives its watchdog's loop_blocked stacks)"]  # fmt: skip
    if server.proc.returncode is not None:
        tail = await asyncio.to_thread(server.stderr_tail)
        return [f"the embedded server exited with code {server.proc.returncode}:", tail]
    return await server.stacks()


def _server_info(server: EmbeddedServer, spec: Spec, code: int | None) -> dict[str, object]:
    info: dict[str, object] = {
        "pid": server.pid,
        "log_file": str(_log_name(server)),
        "stderr_file": str(server.stderr_path),
        "faults": list(spec.faults),
        "argv": server.argv,
        "exit_code": code,
    }
    if spec.workers > 1:
        info.update(
            workers=spec.workers,
            registry=spec.registry,
            log_files=[str(path) for path in server.log_files],
        )
    return info


def _log_name(server: EmbeddedServer) -> Path:
    """The log, as `jarvis diagnose` takes it: a fleet's is its workers' files (a glob)."""
    if server.workers < 2:
        return server.log_path
    path = server.log_path
    return path.with_name(f"{path.stem}.w*{path.suffix}")
