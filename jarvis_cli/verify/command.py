"""`jarvis verify-hang`: its options (each defined once, in `options.py`), and the exit code
of a run."""

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ..console import err, fail, out
from ..dialect_options import DialectOption, HealthOption, SessionInOption, TargetOption
from ..exit_codes import ExitCode
from ..faults import EmbeddedFaultOption
from ..termination import until_terminated
from . import outputs
from .options import VerifyOptions, option
from .plan import Plan
from .report import LineView, LiveView, QuietView, Report, render
from .runner import View, run

#: Every option's default, as the one definition gives it.
DEFAULTS = VerifyOptions()


def _flag(name: str) -> Any:
    """The typer option of `VerifyOptions` field `name`: its flags, help and extras."""
    defined = option(name)
    quiet = defined.default is None or defined.default == ()
    return typer.Option(*defined.flags, help=defined.help, show_default=not quiet, **defined.extra)


def verify_hang(
    urls: Annotated[list[str] | None, _flag("urls")] = None,
    dialect: DialectOption = None,
    session_in: SessionInOption = None,
    target: TargetOption = None,
    health: HealthOption = None,
    headers: Annotated[list[str] | None, _flag("headers")] = None,
    api_key: Annotated[str | None, _flag("api_key")] = None,
    model: Annotated[str | None, _flag("model")] = None,
    expect: Annotated[str, _flag("expect")] = DEFAULTS.expect,
    scenarios: Annotated[list[str] | None, _flag("scenarios")] = None,
    strict: Annotated[bool | None, _flag("strict")] = None,
    max_tokens: Annotated[int | None, _flag("max_tokens")] = None,
    sessions: Annotated[int, _flag("sessions")] = DEFAULTS.sessions,
    rounds: Annotated[int, _flag("rounds")] = DEFAULTS.rounds,
    overlap_ms: Annotated[float, _flag("overlap_ms")] = DEFAULTS.overlap_ms,
    deadline: Annotated[float, _flag("deadline")] = DEFAULTS.deadline,
    cancel_wait: Annotated[float | None, _flag("cancel_wait")] = None,
    detach_grace: Annotated[float | None, _flag("detach_grace")] = None,
    resume_path: Annotated[str, _flag("resume_path")] = DEFAULTS.resume_path,
    cancel_path: Annotated[str, _flag("cancel_path")] = DEFAULTS.cancel_path,
    probe_threshold_ms: Annotated[float, _flag("probe_threshold_ms")] = DEFAULTS.probe_threshold_ms,
    engine_metrics: Annotated[str | None, _flag("engine_metrics")] = None,
    busy_gauge: Annotated[str | None, _flag("busy_gauge")] = None,
    work_stop_bound: Annotated[float | None, _flag("work_stop_bound")] = None,
    log_file: Annotated[Path | None, _flag("log_file")] = None,
    faults: EmbeddedFaultOption = None,
    workers: Annotated[int, _flag("workers")] = DEFAULTS.workers,
    registry: Annotated[str | None, _flag("registry")] = None,
    json_path: Annotated[str | None, _flag("json_path")] = None,
    junit: Annotated[Path | None, _flag("junit")] = None,
    verbose: Annotated[bool, _flag("verbose")] = DEFAULTS.verbose,
    html: Annotated[Path | None, _flag("html")] = None,
) -> int:
    """Prove a streaming chat server neither hangs nor runs two streams of a session at once.

    Any server: OpenAI or Anthropic dialect, or any API a --target file
    describes; the session in a header, the body, the query or a cookie. A
    verdict rests on what is observable: bytes, timing, and each prompt's
    natural answer, learnt during the run in fresh sessions (its very text when
    the model is deterministic). How a superseded stream ends (a finish reason,
    [DONE], an error event, a plain close) is reported, not judged, unless
    --strict. A server that refuses the first request for a reason the set-up
    explains (401, 404, no stream) is a usage error (exit 2) saying what to
    change, never a verdict.

    Sends a new prompt into sessions whose previous answer is still streaming
    (the classic manual test: "Long essay about quantum computing", then "What is
    2+2?" 50 ms later, in many sessions at once), plus bursts, disconnects
    (FIN and RST), a client that stops reading and hostile session ids, while
    probing /healthz every 50 ms. A request that gets no byte for --deadline
    while no other stream gets one either is hung: a FAIL within that bound,
    never a stuck tool; one that streams slowly or waits in the server's queue
    is slow, never hung. Scenarios a server cannot support (no /v1/streams, no
    log) are SKIPPED, never passed.

    --expect says what the server promises for a prompt in a busy session:
    supersede (the default), independent, reject (409 at once, the running
    answer whole) or queue (it waits for the running answer, then streams).

    Does the work stop? work_stops reads the inference engine's busy gauge
    (--engine-metrics, default <url>/metrics when it has one jarvis knows:
    llama.cpp, vLLM, SGLang, TGI): after clients leave mid-stream, and after
    answers are superseded, it must fall back within --work-stop-bound. Behind
    a proxy, pass the engine's own endpoint. Without a gauge it is not run,
    and says why. A slow engine: --max-tokens caps every answer.

    resume drops an answer mid-stream and reconnects with Last-Event-ID (to the
    next --url, another worker, when several are given): the ids must run on
    across the cut and the text be whole; then a Stop (--cancel-path) must end
    an answer within the cancel bound. A server whose events carry no ids, or
    that answers 404/405 at --resume-path, is not run, unless --scenario resume
    names it: then that is its failure. Whether the server resumes is asked
    once, before any scenario; one that does may hold an answer whose client
    left for a reattach: disconnect and leaks then allow --detach-grace (by
    default 15 s, jarvis serve's; give your server's) before such an answer
    must have ended.

    Without --url it starts the embedded reference server (a subprocess on a
    free loopback port), tests it, stops it, and checks its log too. With
    --workers N --registry redis://... that server is a fleet: N processes
    behind one port sharing one stream per session through Redis.

    Exit codes: 0 every scenario that ran passed, 1 a stability failure (a
    hang, a leak, an overlap), 2 usage error (a flag, or a set-up the server
    refuses), 3 server unreachable, failed to start, or nothing could be
    checked.

        jarvis verify-hang
        jarvis verify-hang --fault no-cancel          # watch it catch the bug
        jarvis verify-hang --url http://127.0.0.1:8000 --log-file logs/system.log
        jarvis verify-hang --url http://localhost:8001/v1 --expect independent
        jarvis verify-hang --url http://127.0.0.1:8000 --engine-metrics http://127.0.0.1:8080/metrics
        jarvis verify-hang --url http://127.0.0.1:8080 --max-tokens 40 --sessions 2 --rounds 1
        jarvis verify-hang --url http://127.0.0.1:8000 --expect reject
        jarvis verify-hang --url http://127.0.0.1:9000 --session-in body:metadata.session_id
        jarvis verify-hang --url http://127.0.0.1:9000 --dialect anthropic --health /health
        jarvis verify-hang --url https://api.example.com --api-key "$KEY" --header 'X-Team: a'
        jarvis verify-hang --target my-api.toml
        jarvis verify-hang --url http://127.0.0.1:8001 --url http://127.0.0.1:8002
        jarvis verify-hang --url http://w1:8000 --url http://w2:8000 --scenario resume
        jarvis verify-hang --url http://127.0.0.1:8000 --detach-grace 5
        jarvis verify-hang --workers 2 --registry redis://127.0.0.1:6379/0
        jarvis verify-hang --scenario overlap --sessions 32 --rounds 5
        jarvis verify-hang --json report.json --junit verify.xml
        jarvis verify-hang --fault no-cancel --html timeline.html
    """
    # The parameters are VerifyOptions' fields, one for one (tests/test_verify_options.py).
    prepared = VerifyOptions.build(**locals()).prepare()
    json_stdout = prepared.options.json_path == "-"
    mark = outputs.log_mark(prepared)
    try:
        with _view(prepared.plan, quiet=json_stdout) as view:
            result = asyncio.run(until_terminated(run(prepared.plan, prepared.spec, view)))
    except asyncio.CancelledError:
        fail("terminated (SIGTERM): the embedded server was stopped, no report")
        return ExitCode.INTERRUPTED
    report = Report(prepared.plan, result)
    if not json_stdout:
        render(report, out, verbose=prepared.options.verbose)
    outputs.write(report, prepared, mark)
    return int(report.exit_code())


@contextlib.contextmanager
def _view(plan: Plan, *, quiet: bool) -> Iterator[View]:
    if quiet:
        yield QuietView()
    elif err.is_terminal:
        with LiveView(err, plan.scenarios) as live:
            yield live
    else:
        yield LineView(err)
