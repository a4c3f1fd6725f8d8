"""`jarvis swarm`: a locust swarm of interrupting chat users, turned into a pass/fail gate."""

import asyncio
import dataclasses
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from jarvis.exceptions import ConfigError

from ..chatapi.resolve import ChatAPI, chat_api
from ..console import err, fail, out
from ..dialect_options import DialectOption, SessionInOption, TargetOption
from ..durations import parse_duration
from ..exit_codes import ExitCode
from ..faults import EmbeddedFaultOption, embedded_faults
from ..termination import until_terminated
from ..verify.embedded import check_fleet, start_embedded
from ..verify.plan import EMBEDDED_CANCEL_WAIT_S
from ..verify.target import normalise_url
from .curve import Curve, Level
from .findmax import Search, find_max
from .report import SwarmReport, render
from .runner import LocustFailed, LocustRun, Plan, locate_locustfile, require_locust, run_locust
from .target import check_reachable, diagnose_log
from .thresholds import Figures, ReportMissing, Thresholds, judge

T = TypeVar("T")
_SHAPES = ("steady", "ramp", "spike")
_OVERLAPS = ("supersede", "independent")
_USAGE = ("ask", "off")
USERS = 100
RUN_TIME = "60s"
#: --find-max: each level starts its users within this share of its run time at least.
LEVEL_RAMP_SHARE = 0.2
#: --find-max against a --url: pause between levels, so that one level's leftovers (an
#: engine still decoding for users that left) do not weigh on the next.
SETTLE_S = 2.0


def swarm(
    url: Annotated[
        list[str] | None,
        typer.Option(
            metavar="URL",
            help="Swarm this server (base URL, with or without /v1). Repeat it for servers "
            "sharing one registry (a fleet's hosts, replicas behind a balancer): each user's "
            "prompts then go to the URLs in turn. Default: the --target file's url, else "
            "start the embedded reference server.",
            show_default=False,
        ),
    ] = None,
    dialect: DialectOption = None,
    session_in: SessionInOption = None,
    target: TargetOption = None,
    users: Annotated[
        int | None,
        typer.Option(
            help=f"Concurrent chat users (sessions). [default: {USERS}; not with --find-max]",
            show_default=False,
        ),
    ] = None,
    spawn_rate: Annotated[float, typer.Option(help="Users started per second.")] = 20.0,
    run_time: Annotated[
        str | None,
        typer.Option(
            help=f"How long the swarm runs: 30s, 2m, 1h. [default: {RUN_TIME}; not with "
            "--find-max: --level-time]",
            show_default=False,
        ),
    ] = None,
    interrupt_rate: Annotated[
        float,
        typer.Option(help="Share of conversations interrupted by a new prompt mid-stream (0-1)."),
    ] = 0.3,
    reload_rate: Annotated[
        float,
        typer.Option(
            help="Share of the conversations not interrupted whose client reloads "
            "mid-answer: drops the connection after 2-5 chunks and resumes with "
            "Last-Event-ID at GET /v1/streams/{id} (0-1). The server must resume (jarvis "
            "serve --resume-ttl; the embedded server does); else each is a NoResume."
        ),
    ] = 0.0,
    overlap: Annotated[
        str,
        typer.Option(
            help="supersede: a new prompt must end the session's previous stream (its later "
            "chunks are StaleChunk). independent: a server that runs them side by side."
        ),
    ] = "supersede",
    shape: Annotated[
        str,
        typer.Option(
            help="Load shape: steady (the users throughout), ramp (0 to --users over 80% "
            "of the run), spike (1.5x users interrupting themselves 3 times, 40-60% of the run)."
        ),
    ] = "steady",
    workers: Annotated[
        int,
        typer.Option(
            help="Locust's workers: run locust distributed on this machine, a master and N "
            "worker processes (0: one process). Other machines: docs/swarm.md. The "
            "embedded server's workers are --server-workers."
        ),
    ] = 0,
    max_p99_ttft_ms: Annotated[
        float, typer.Option(help="Fail when time to first token p99 is above this (ms).")
    ] = 1000.0,
    max_p99_interrupt_ms: Annotated[
        float,
        typer.Option(help="Fail when interrupt-to-first-token p99 is above this (ms)."),
    ] = 1500.0,
    max_p99_resume_ms: Annotated[
        float,
        typer.Option(
            help="Fail when the p99 from a reload's reconnect to its first resumed event "
            "is above this (ms; checked when reloads happened, --reload-rate)."
        ),
    ] = 1000.0,
    max_fail_ratio: Annotated[
        float,
        typer.Option(
            help="Fail when more than this share of streams and resumes failed (hang, "
            "stale chunk, wrong text, HTTP error, broken stream; a resume's gap or none)."
        ),
    ] = 0.01,
    hang_deadline: Annotated[
        float, typer.Option(help="Seconds without a byte that make a stream a hang.")
    ] = 5.0,
    max_tokens: Annotated[
        int,
        typer.Option(help="Tokens each prompt asks for (a slow engine wants few, e.g. 32)."),
    ] = 400,
    usage: Annotated[
        str,
        typer.Option(
            help="ask: OpenAI requests ask for the answer's token count "
            "(stream_options.include_usage), so inter-token latency is counted per token "
            "from it. off: for a server that refuses the field; tokens are then estimated "
            "from the text (~4 chars/token), and the summary says so."
        ),
    ] = "ask",
    find_max: Annotated[
        bool,
        typer.Option(
            "--find-max",
            help="Search for the most users that still meet the thresholds: short swarms "
            "(--level-time each) from --start-users, doubling until one crosses a threshold, "
            "then bisecting. Prints the curve (users to p99 TTFT, p99 interrupt, failures, "
            "throughput, ITL) and writes it to find-max.json and find-max.md in --report-dir.",
        ),
    ] = False,
    start_users: Annotated[int, typer.Option(help="--find-max: the first level's users.")] = 5,
    max_users: Annotated[int, typer.Option(help="--find-max: the search's ceiling (users).")] = 80,
    level_time: Annotated[
        str, typer.Option(help="--find-max: how long each level swarms.")
    ] = "15s",
    report_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where locust's CSV and HTML reports go (and the embedded server's log). "
            "Default: reports/swarm-<timestamp>.",
            show_default=False,
        ),
    ] = None,
    fault: EmbeddedFaultOption = None,
    server_workers: Annotated[
        int,
        typer.Option(
            help="Embedded server only: run it as this many worker processes behind its one "
            "port (jarvis serve --workers N; not locust's --workers); above 1 needs "
            "--registry. diagnose then reads every worker's log.",
        ),
    ] = 1,
    registry: Annotated[
        str | None,
        typer.Option(
            metavar="redis://HOST:PORT/DB",
            help="Embedded server only: its shared registry (jarvis serve --registry), one "
            "stream per session across --server-workers. Must answer at start (else exit 3).",
            show_default=False,
        ),
    ] = None,
    locustfile: Annotated[
        Path | None,
        typer.Option(
            help="The locustfile to run. Default: the repository's loadtests/locustfile.py.",
            show_default=False,
        ),
    ] = None,
) -> int:
    """Swarm a streaming chat server with locust users who interrupt themselves; gate on it.

    Each user keeps its own session, streams answers and, at --interrupt-rate,
    sends a new prompt while the answer is still streaming (or leaves
    mid-stream, or, at --reload-rate, reloads: leaves and resumes the answer
    with Last-Event-ID). Locust runs headless in its own processes; its CSV and
    HTML reports go to --report-dir. The summary shows time to first token, the
    interrupt-to-first-token latency, the resume latency when users reloaded,
    and failures by kind (Hang, StaleChunk, WrongText, HTTPError, BrokenStream;
    a resume's ResumeGap, NoResume). When locust itself runs out of CPU, it
    says so instead of blaming the server.

    Without --url it starts the embedded reference server (resume on), swarms
    it, stops it, and runs `jarvis diagnose` on its log: an unhealthy verdict
    fails too.
    With --server-workers N --registry redis://... that server is a fleet. With
    several --url, each user's prompts take turns over the servers.

    With --find-max it searches instead for the most users that meet the
    thresholds: one short swarm per level (each level's reports in its own
    folder, the embedded server started afresh for each), doubling from
    --start-users until a level crosses a threshold or --max-users is reached,
    then bisecting between the last level that held and the first that did
    not. At most log2(max/start) + 5 levels.

    Exit codes: 0 every threshold held (--find-max: a level held), 1 a threshold
    was crossed (--find-max: even the first level), named in the summary, 2 usage
    error, 3 server unreachable or locust left no report.

        jarvis swarm --users 20 --run-time 30s
        jarvis swarm --fault no-cancel --users 20 --run-time 15s    # watch it fail
        jarvis swarm --url http://127.0.0.1:8000 --users 200 --workers 2
        jarvis swarm --url http://127.0.0.1:8001 --url http://127.0.0.1:8002 --users 50
        jarvis swarm --server-workers 2 --registry redis://127.0.0.1:6379/0
        jarvis swarm --url http://127.0.0.1:9999 --dialect anthropic --overlap independent
        jarvis swarm --target chat.toml --session-in body:metadata.session
        jarvis swarm --shape spike --run-time 2m --max-p99-ttft-ms 500
        jarvis swarm --reload-rate 0.5 --max-p99-resume-ms 200
        jarvis swarm --report-dir reports/nightly --max-fail-ratio 0
        jarvis swarm --find-max --start-users 5 --max-users 80 --level-time 15s
        jarvis swarm --find-max --url http://127.0.0.1:8080 --overlap independent \
            --max-tokens 32 --max-p99-ttft-ms 3000 --max-users 16
    """
    if find_max:
        _check(users is None, "--users is one swarm's; with --find-max give --start-users "
               "and --max-users")  # fmt: skip
        _check(run_time is None, "--run-time is one swarm's; with --find-max give --level-time")
        _check(start_users >= 1, "--start-users must be at least 1")
        _check(
            max_users >= start_users,
            f"--max-users ({max_users}) must be at least --start-users ({start_users})",
        )
        _check(shape == "steady", "--find-max runs steady levels; leave --shape out")
        seconds = parse_duration(level_time, "--level-time")
        _check(seconds >= 3, "--level-time must be at least 3s")
        users = start_users
    else:
        users = USERS if users is None else users
        seconds = parse_duration(run_time or RUN_TIME, "--run-time")
        _check(seconds >= 1, "--run-time must be at least 1s")
    _check(users >= 1, "--users must be at least 1")
    _check(spawn_rate > 0, "--spawn-rate must be above 0")
    _check(0 <= interrupt_rate <= 1, "--interrupt-rate is a share between 0 and 1")
    _check(0 <= reload_rate <= 1, f"--reload-rate is a share between 0 and 1, not {reload_rate:g}")
    _check(workers >= 0, "--workers must be 0 or more")
    _check(0 <= max_fail_ratio <= 1, "--max-fail-ratio is a share between 0 and 1")
    _check(
        max_p99_ttft_ms > 0 and max_p99_interrupt_ms > 0 and max_p99_resume_ms > 0,
        "latency thresholds (--max-p99-ttft-ms, --max-p99-interrupt-ms, "
        "--max-p99-resume-ms) must be above 0",
    )
    _check(hang_deadline > 0, "--hang-deadline must be above 0")
    _check(max_tokens >= 1, "--max-tokens must be at least 1")
    _check(usage in _USAGE, f"--usage takes {' or '.join(_USAGE)}, not {usage!r}")
    _check(shape in _SHAPES, f"--shape takes one of {', '.join(_SHAPES)}, not {shape!r}")
    _check(overlap in _OVERLAPS, f"--overlap takes {' or '.join(_OVERLAPS)}, not {overlap!r}")
    speaker = chat_api(url or [], target=target, dialect=dialect, session_in=session_in)
    urls = tuple(normalise_url(u) for u in speaker.urls)
    first = urls[0] if urls else None
    faults = list(embedded_faults(fault, first))
    check_fleet(server_workers, registry, faults=faults, url=first, workers_flag="--server-workers")
    require_locust()
    plan = Plan(
        url=first or "",
        urls=urls if len(urls) > 1 else (),
        users=users,
        spawn_rate=spawn_rate,
        run_time_s=seconds,
        interrupt_rate=interrupt_rate,
        workers=workers,
        locustfile=locate_locustfile(locustfile),
        report_dir=report_dir or Path("reports") / time.strftime("swarm-%Y%m%d-%H%M%S"),
        shape=shape,
        hang_deadline=hang_deadline,
        overlap=overlap,
        dialect=dialect,
        session_in=session_in,
        target=target.resolve() if target else None,
        max_tokens=max_tokens,
        ask_usage=usage == "ask",
        reload_rate=reload_rate,
    )
    limits = Thresholds(max_p99_ttft_ms, max_p99_interrupt_ms, max_fail_ratio, max_p99_resume_ms)
    server = _Embedded(faults, server_workers, registry)
    if find_max:
        search = Search(start_users, max_users)
        err.print(f"finding the most users that hold the thresholds: {seconds:g} s a level, "
                  f"from {start_users} to at most {max_users} users (at most "
                  f"{search.most_levels} levels); reports in {plan.report_dir}",
                  highlight=False)  # fmt: skip
        curve = _until_done(_find_max(search, plan, limits, server, speaker))
        if curve is None:
            return ExitCode.INTERRUPTED
        curve.render(out)
        data, table = curve.write(plan.report_dir)
        out.print(f"curve: {data} {table}", style="dim", highlight=False, soft_wrap=True)
        return int(ExitCode.OK if curve.best is not None else ExitCode.FAILURE)
    err.print(f"swarming for {seconds:g} s; reports in {plan.report_dir}", highlight=False)
    report = _until_done(_swarm(plan, limits, server, speaker))
    if report is None:
        return ExitCode.INTERRUPTED
    render(report, out)
    return int(report.exit_code())


def _until_done(work: Coroutine[Any, Any, T]) -> T | None:
    """Run the swarm(s); None when SIGTERM stopped them (said on stderr)."""
    try:
        return asyncio.run(until_terminated(work))
    except asyncio.CancelledError:
        fail("terminated (SIGTERM): locust and the embedded server were stopped, no report")
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class _Embedded:
    """How to start the embedded server, when there is no --url."""

    faults: list[str]
    workers: int = 1
    registry: str | None = None

    def describe(self) -> str:
        fleet = f" --workers {self.workers}" if self.workers > 1 else ""
        shared = f" --registry {self.registry}" if self.registry else ""
        faults = " --fault " + " ".join(self.faults) if self.faults else ""
        return f"embedded server{fleet}{shared}{faults}"


async def _find_max(
    search: Search, plan: Plan, limits: Thresholds, embedded: _Embedded, speaker: ChatAPI
) -> Curve:
    """One swarm per level the search asks for, each in its own folder; the curve."""
    if plan.url:
        for url in plan.servers:
            await check_reachable(url, speaker.probe_path)

    ran = 0

    async def level(users: int) -> Level:
        nonlocal ran
        if plan.url and ran:
            await asyncio.sleep(SETTLE_S)
        ran += 1
        ramp = users / (plan.run_time_s * LEVEL_RAMP_SHARE)
        sized = dataclasses.replace(
            plan,
            users=users,
            spawn_rate=max(plan.spawn_rate, ramp),
            report_dir=plan.report_dir / f"users-{users:04d}",
        )
        err.print(f"level: {users} users for {plan.run_time_s:g} s ...", highlight=False)
        return Level.of(await _swarm(sized, limits, embedded, speaker, timeline=False))

    def progress(count: int, level: Level) -> None:
        style = "green" if level.passed else "red"
        err.print(f"[{style}]level {count}[/]: {level.summary()}", highlight=False)

    levels = await find_max(search, level, progress)
    target = embedded.describe() if not plan.url else " + ".join(plan.servers)
    return Curve(levels, limits, search.start, search.ceiling, plan.run_time_s, target)


async def _swarm(
    plan: Plan,
    limits: Thresholds,
    embedded: _Embedded,
    speaker: ChatAPI,
    *,
    timeline: bool = True,
) -> SwarmReport:
    if plan.url:
        for url in plan.servers:
            await check_reachable(url, speaker.probe_path)
        return _judge(plan, limits, await run_locust(plan))
    plan.report_dir.mkdir(parents=True, exist_ok=True)
    log_path = (plan.report_dir / "server.log").resolve()
    server = await start_embedded(
        log_path=log_path,
        cancel_wait=EMBEDDED_CANCEL_WAIT_S,
        faults=embedded.faults,
        workers=embedded.workers,
        registry=embedded.registry,
    )
    try:
        started = dataclasses.replace(plan, url=server.url)
        run = await run_locust(started)
    finally:
        await server.stop()
    report = _judge(started, limits, run)
    report.target = embedded.describe()
    report.diagnosis = await asyncio.to_thread(
        diagnose_log, log_path, plan.report_dir / "timeline.html" if timeline else None
    )
    return report


def _judge(plan: Plan, limits: Thresholds, run: LocustRun) -> SwarmReport:
    if run.timed_out:
        raise LocustFailed(f"locust did not finish in time and was stopped:\n{run.tail()}")
    try:
        figures = Figures.load(plan.csv_prefix)
    except ReportMissing as exc:
        raise LocustFailed(f"{exc}; locust exited {run.returncode}:\n{run.tail()}") from None
    return SwarmReport(plan, figures, judge(figures, limits), run)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
