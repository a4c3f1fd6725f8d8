"""`jarvis verify-hang`: options, validation, and the exit code of a run."""

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from jarvis.exceptions import ConfigError

from ..chatapi.resolve import chat_api
from ..console import err, fail, out
from ..dialect_options import DialectOption, HealthOption, SessionInOption, TargetOption
from ..exit_codes import ExitCode
from ..faults import EmbeddedFaultOption, embedded_faults
from ..termination import until_terminated
from ..timeline.draw import draw_logs
from ..timeline.html import check_writable
from . import serverlog
from .embedded import check_fleet
from .plan import (
    CANCEL_WAIT,
    EMBEDDED_CANCEL_WAIT_S,
    REMOTE_CANCEL_WAIT_S,
    SCENARIOS,
    Expect,
    Plan,
)
from .report import LineView, LiveView, QuietView, Report, render, write_junit
from .runner import RunResult, Spec, View, run


def verify_hang(
    url: Annotated[
        list[str] | None,
        typer.Option(
            metavar="URL",
            help="Test this server (base URL, with or without /v1). Repeat it for replicas "
            "behind a balancer: each session's prompts then go to the URLs in turn, which "
            "finds a registry that lives inside each process. Default: start the embedded "
            "reference server.",
            show_default=False,
        ),
    ] = None,
    dialect: DialectOption = None,
    session_in: SessionInOption = None,
    target: TargetOption = None,
    health: HealthOption = None,
    strict: Annotated[
        bool | None,
        typer.Option(
            "--strict/--no-strict",
            help="Hold the server to jarvis's own contract: a finish_reason chunk and "
            "[DONE] on every stream, end_reason, exact text. Default: on for the embedded "
            "server, off with --url (verdicts rest on behaviour alone).",
            show_default=False,
        ),
    ] = None,
    sessions: Annotated[int, typer.Option(help="Sessions that overlap at once.")] = 8,
    rounds: Annotated[
        int, typer.Option(help="Overlap rounds per session (the classic test repeats 5).")
    ] = 5,
    overlap_ms: Annotated[
        float,
        typer.Option(
            help="Delay from the server answering prompt A to prompt B, same session (ms)."
        ),
    ] = 50.0,
    deadline: Annotated[
        float, typer.Option(help="Seconds any request may take before it counts as hung.")
    ] = 5.0,
    expect: Annotated[
        str,
        typer.Option(
            help="supersede: one stream per session, a new prompt ends the old one. "
            "independent: overlapping prompts may run side by side."
        ),
    ] = "supersede",
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Run only this scenario (repeatable): {', '.join(SCENARIOS)}.",
            show_default=False,
        ),
    ] = None,
    log_file: Annotated[
        Path | None,
        typer.Option(
            help="The server's structured log, to check for this run's window. "
            "Embedded: where its server logs (default: a new temporary file).",
            show_default=False,
        ),
    ] = None,
    fault: EmbeddedFaultOption = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Embedded server only: run it as this many worker processes behind its one "
            "port (jarvis serve --workers N); above 1 needs --registry. Every scenario that "
            "reads its log reads each worker's file.",
        ),
    ] = 1,
    registry: Annotated[
        str | None,
        typer.Option(
            metavar="redis://HOST:PORT/DB",
            help="Embedded server only: its shared registry (jarvis serve --registry): "
            "one stream per session across --workers. Must answer at start (else exit 3).",
            show_default=False,
        ),
    ] = None,
    cancel_wait: Annotated[
        float | None,
        typer.Option(
            CANCEL_WAIT.flag,
            help="Bound (s) on how long a superseded stream may take to end: the server's "
            f"{CANCEL_WAIT.flag}. Default {EMBEDDED_CANCEL_WAIT_S:g} (the embedded server is "
            f"started with it), or {REMOTE_CANCEL_WAIT_S:g} (jarvis serve's default) with --url.",
            show_default=False,
        ),
    ] = None,
    probe_threshold_ms: Annotated[
        float, typer.Option(help="A /healthz probe slower than this fails responsiveness.")
    ] = 250.0,
    model: Annotated[
        str | None,
        typer.Option(help="Model to request. Default: the first of GET /v1/models."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="JARVIS_VERIFY_API_KEY", help="Bearer token for --url."),
    ] = None,
    json_path: Annotated[
        str | None,
        typer.Option(
            "--json",
            help="Write the versioned JSON report here ('-': stdout, instead of the table).",
            show_default=False,
        ),
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option(help="Write JUnit XML here: one testcase per scenario.", show_default=False),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show all evidence, passing scenarios too.")
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option(
            help="Also draw the server side of the run from its log: the timeline page "
            "`jarvis diagnose --html` writes (embedded server, or --url with --log-file).",
            show_default=False,
        ),
    ] = None,
) -> int:
    """Prove a streaming chat server neither hangs nor runs two streams of a session at once.

    Any server: OpenAI or Anthropic dialect, or any API a --target file
    describes; the session in a header, the body, the query or a cookie. A
    verdict rests on what is observable: bytes, timing, and each prompt's
    natural length, learnt during the run in fresh sessions. How a superseded
    stream ends (a finish reason, [DONE], an error event, a plain close) is
    reported, not judged, unless --strict.

    Sends a new prompt into sessions whose previous answer is still streaming
    (the classic manual test: "Long essay about quantum computing", then "What is
    2+2?" 50 ms later, in many sessions at once), plus bursts, disconnects
    (FIN and RST), a client that stops reading and hostile session ids, while
    probing /healthz every 50 ms. Every request has a hard deadline: a hung
    server is a FAIL within --deadline, never a stuck tool. Scenarios a server
    cannot support (no /v1/streams, no log) are SKIPPED, never passed.

    Without --url it starts the embedded reference server (a subprocess on a
    free loopback port), tests it, stops it, and checks its log too. With
    --workers N --registry redis://... that server is a fleet: N processes
    behind one port sharing one stream per session through Redis.

    Exit codes: 0 every scenario that ran passed, 1 a stability failure (a
    hang, a leak, an overlap), 2 usage error, 3 server unreachable, failed to
    start, or nothing could be checked.

        jarvis verify-hang
        jarvis verify-hang --fault no-cancel          # watch it catch the bug
        jarvis verify-hang --url http://127.0.0.1:8000 --log-file logs/system.log
        jarvis verify-hang --url http://localhost:8001/v1 --expect independent
        jarvis verify-hang --url http://127.0.0.1:9000 --session-in body:metadata.session_id
        jarvis verify-hang --url http://127.0.0.1:9000 --dialect anthropic --health /health
        jarvis verify-hang --target my-api.toml
        jarvis verify-hang --url http://127.0.0.1:8001 --url http://127.0.0.1:8002
        jarvis verify-hang --workers 2 --registry redis://127.0.0.1:6379/0
        jarvis verify-hang --scenario overlap --sessions 32 --rounds 5
        jarvis verify-hang --json report.json --junit verify.xml
        jarvis verify-hang --fault no-cancel --html timeline.html
    """
    chat = chat_api(url or [], dialect=dialect, session_in=session_in, target=target, health=health)
    if target is not None and not chat.urls:
        raise ConfigError(f"--target {target}: the file names no url; pass --url")
    faults = embedded_faults(fault, chat.urls[0] if chat.urls else None)
    check_fleet(workers, registry, faults=faults, url=chat.urls[0] if chat.urls else None)
    if html is not None and chat.urls and log_file is None:
        raise ConfigError(
            "--html draws the server's side of the run from its log: with --url, pass the "
            "server's log as --log-file too"
        )
    if html is not None:
        check_writable(html)
    # Where the log stood before the run: the page draws what the run wrote, not what an
    # earlier run (or another client) left in a --log-file.
    log_mark = serverlog.size(log_file) if log_file is not None else None
    plan = Plan(
        strict=strict if strict is not None else not chat.urls,
        sessions=sessions,
        rounds=rounds,
        overlap_s=overlap_ms / 1000,
        deadline=deadline,
        expect=_expect(expect),
        cancel_wait=_cancel_wait(cancel_wait, chat.urls),
        threshold=probe_threshold_ms / 1000,
        scenarios=Plan.select(scenario),
    )
    spec = Spec(
        urls=chat.urls,
        log_file=log_file,
        faults=faults,
        workers=workers,
        registry=registry,
        model=model,
        api_key=api_key,
        dialect=chat.dialect,
        session_in=chat.session_in,
        health=chat.health,
    )
    json_stdout = json_path == "-"
    try:
        with _view(plan, quiet=json_stdout) as view:
            result = asyncio.run(until_terminated(run(plan, spec, view)))
    except asyncio.CancelledError:
        fail("terminated (SIGTERM): the embedded server was stopped, no report")
        return ExitCode.INTERRUPTED
    report = Report(plan, result)
    if junit is not None:
        write_junit(report, junit)
    document = json.dumps(report.to_json(), indent=2) + "\n"
    if json_stdout:
        sys.stdout.write(document)
    else:
        if json_path is not None:
            _write(Path(json_path), document)
        render(report, out, verbose=verbose)
    if html is not None:
        _draw(result, html, log_mark)
    return int(report.exit_code())


def _draw(result: RunResult, path: Path, mark: serverlog.Mark | None) -> None:
    """The server-side timeline of the run: what its log gained during the run (from
    `mark`, the sizes noted before it). Drawn after the report is out: the page is an
    extra, and no failure of it changes the run's verdict or exit code."""
    log_path = result.target.log_path
    if log_path is None:
        err.print("no timeline: the server's log is unknown", highlight=False)
        return
    names = [str(file) for file in serverlog.files(log_path)]
    offsets = {str(file): at for file, at in mark.offsets.items()} if mark is not None else {}
    try:
        _, size = draw_logs(
            names, path, title=f"jarvis verify-hang: {result.target.base_url}", offsets=offsets
        )
    except Exception as exc:  # an extra: reported, never the run's verdict
        err.print(f"no timeline: {exc}", highlight=False, soft_wrap=True)
        return
    err.print(f"timeline: {path} ({size / 1e6:.2f} MB)", highlight=False, soft_wrap=True)


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write --json {path}: {exc.strerror}") from exc


def _cancel_wait(value: float | None, urls: tuple[str, ...]) -> float:
    if value is not None:
        return value
    return REMOTE_CANCEL_WAIT_S if urls else EMBEDDED_CANCEL_WAIT_S


def _expect(value: str) -> Expect:
    try:
        return Expect(value)
    except ValueError:
        raise ConfigError(f"--expect takes supersede or independent, not {value!r}") from None


@contextlib.contextmanager
def _view(plan: Plan, *, quiet: bool) -> Iterator[View]:
    if quiet:
        yield QuietView()
    elif err.is_terminal:
        with LiveView(err, plan.scenarios) as live:
            yield live
    else:
        yield LineView(err)
