"""`jarvis serve`: run the reference server."""

from pathlib import Path
from typing import Annotated, Any, cast

import typer

from jarvis.config import ServerConfig
from jarvis.faults import FAULT_HELP, Fault
from jarvis.settings import GuardSettings, LogFormat, OnBusy

from .console import err
from .exit_codes import ExitCode
from .faults import parse_faults

_FAULTS = ", ".join(f"{f.value} ({FAULT_HELP[f]})" for f in Fault)
#: The guard's settings as the library defines them: each option's default comes from here.
GUARD = GuardSettings()


def guard_option(name: str, *, more: str = "", **options: Any) -> Any:
    """The option of one guard setting: its flag and help as `GuardSettings` defines them
    (`more` adds what only the command line needs to say)."""
    setting = GuardSettings.setting(name)
    return typer.Option(setting.flag, help=f"{setting.help} {more}".rstrip(), **options)


def serve(
    host: Annotated[
        str, typer.Option(help="Address to bind. Loopback unless you say otherwise.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind; 0 picks a free one.")] = 8000,
    log_file: Annotated[
        str, typer.Option(help="Structured event log; '-' writes to stdout.")
    ] = "logs/system.log",
    log_format: Annotated[str, guard_option("log_format")] = GUARD.log_format,
    log_max_mb: Annotated[
        float,
        typer.Option(
            help="Rotate --log-file before a write would take it past this many MiB: "
            "system.log becomes system.log.1, older files shift up (.1 to .2 ...) and the "
            "oldest beyond --log-backups is deleted; lines never split across files. "
            "`jarvis diagnose logs/system.log` reads the whole set, oldest first, as one "
            "log. 0: never rotate. Rotating with logrotate instead: move the file, then "
            "send SIGHUP; the server reopens --log-file.",
        ),
    ] = 0.0,
    log_backups: Annotated[
        int,
        typer.Option(help="Rotated files kept with --log-max-mb (system.log.1 ... .N)."),
    ] = 5,
    cancel_wait: Annotated[float, guard_option("cancel_wait")] = GUARD.cancel_wait,
    flush_ms: Annotated[float, guard_option("flush_ms")] = GUARD.flush_ms,
    flush_bytes: Annotated[int, guard_option("flush_bytes")] = GUARD.flush_bytes,
    send_timeout: Annotated[float, guard_option("send_timeout")] = GUARD.send_timeout,
    shutdown_timeout: Annotated[float, guard_option("shutdown_timeout")] = GUARD.shutdown_timeout,
    token_rate: Annotated[
        float, typer.Option(help="Synthetic model: tokens per second (0 = unthrottled).")
    ] = 100.0,
    first_token_ms: Annotated[
        float, typer.Option(help="Synthetic model: delay before the first token (ms).")
    ] = 20.0,
    upstream: Annotated[
        str | None,
        typer.Option(help="Front this OpenAI-compatible base URL instead of the synthetic model."),
    ] = None,
    upstream_api_key: Annotated[
        str | None,
        typer.Option(envvar="JARVIS_UPSTREAM_API_KEY", help="Bearer token for --upstream."),
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(help=f"Switch on a deliberate bug (repeatable): {_FAULTS}."),
    ] = None,
    watchdog_ms: Annotated[float, guard_option("watchdog_ms")] = GUARD.watchdog_ms,
    lag_report: Annotated[float, guard_option("lag_report_s")] = GUARD.lag_report_s,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body accepted.")] = 1 << 20,
    registry: Annotated[
        str | None,
        guard_option(
            "registry",
            more="Must answer at start (else exit 3).",
            envvar="JARVIS_REGISTRY",
            metavar="redis://HOST:PORT/DB",
        ),
    ] = GUARD.registry,
    on_busy: Annotated[str, guard_option("on_busy", metavar="supersede|reject|queue")] = (
        GUARD.on_busy
    ),
    queue_wait: Annotated[float, guard_option("queue_wait")] = GUARD.queue_wait,
    ping: Annotated[float, guard_option("ping")] = GUARD.ping,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes behind the one port; above 1 needs --registry. Each "
            "writes its own log (system.w1.log ...): `jarvis diagnose logs/system.w*.log` "
            "merges them.",
        ),
    ] = 1,
    resume_ttl: Annotated[
        float,
        guard_option(
            "resume_ttl",
            more="Serves GET /v1/streams/{id} (Last-Event-ID) and, with --workers, keeps "
            "the events on --registry's Redis so that any worker resumes.",
            metavar="SECONDS",
        ),
    ] = GUARD.resume_ttl,
    resume_max_mb: Annotated[
        float, guard_option("resume_max_mb", metavar="MIB")
    ] = GUARD.resume_max_mb,
    detach_grace: Annotated[
        float, guard_option("detach_grace", metavar="SECONDS")
    ] = GUARD.detach_grace,
) -> int:
    """Run the reference OpenAI-compatible streaming server.

    One stream per session (X-Session-Id): a new prompt cancels the old
    stream and waits, bounded by --cancel-wait, for its cleanup (--on-busy
    reject refuses it with 409 instead; --on-busy queue waits for the old
    stream to end). A silent stream sends ': ping' every --ping seconds.
    Every step is logged to --log-file. Try it:

        curl -N localhost:8000/v1/chat/completions -H 'X-Session-Id: s1' \\
          -d '{"messages":[{"role":"user","content":"Long essay"}],"stream":true}'
    """
    from jarvis.server import serve as run_server

    faults = parse_faults(fault)
    config = ServerConfig(
        host=host,
        port=port,
        guard=GuardSettings(
            cancel_wait=cancel_wait,
            flush_ms=flush_ms,
            flush_bytes=flush_bytes,
            send_timeout=send_timeout,
            shutdown_timeout=shutdown_timeout,
            log_format=cast("LogFormat", log_format),  # checked by GuardSettings
            watchdog_ms=watchdog_ms,
            lag_report_s=lag_report,
            registry=registry,
            resume_ttl=resume_ttl,
            resume_max_mb=resume_max_mb,
            detach_grace=detach_grace,
            on_busy=cast("OnBusy", on_busy),  # checked by GuardSettings
            queue_wait=queue_wait,
            ping=ping,
        ),
        log_file=None if log_file == "-" else Path(log_file),
        log_max_mb=log_max_mb,
        log_backups=log_backups,
        token_rate=token_rate,
        first_token_ms=first_token_ms,
        upstream=upstream,
        upstream_api_key=upstream_api_key,
        max_body_bytes=max_body_bytes,
        faults=faults,
        workers=workers,
    )

    def ready(bound: int) -> None:
        source = upstream or "synthetic model"
        active = ", ".join(sorted(f.value for f in faults)) or "none"
        fleet = f"{workers} workers, registry {registry}; " if workers > 1 else ""
        shared = f"registry {registry}; " if registry and workers == 1 else ""
        err.print(
            f"[bold green]jarvis[/] serving on http://{host}:{bound} "
            f"([dim]{fleet}{shared}{source}; log {log_file}; faults {active}[/])",
            highlight=False,
            soft_wrap=True,
        )

    server = run_server(config, on_ready=ready)
    if isinstance(server, int):  # a fleet: its exit code
        return server
    return ExitCode.OK if server.started or server.should_exit else ExitCode.UNAVAILABLE
