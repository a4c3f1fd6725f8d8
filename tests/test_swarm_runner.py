"""`jarvis swarm`'s locust runner without running locust: the command lines it builds, where
it finds the locustfile, and when it calls the load generator the bottleneck."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from jarvis.exceptions import ConfigError
from jarvis_cli.chatapi.resolve import chat_api
from jarvis_cli.swarm.runner import (
    DEFAULT_LOCUSTFILE,
    LocustRun,
    Plan,
    Process,
    locate_locustfile,
)

PLAN = Plan(
    url="http://127.0.0.1:8000", users=30, spawn_rate=15, run_time_s=30, interrupt_rate=0.3,
    workers=2, locustfile=Path("/x/locustfile.py"), report_dir=Path("/r"),
)  # fmt: skip


TARGET = """
url = "http://127.0.0.1:9"
health = "/ping"
session = "body:conv"
[request]
path = "/chat"
body = { message = "{prompt}", conv = "{session}" }
[stream]
text = "delta"
end = "data:[DONE]"
"""


def process(role: str, samples: list[float], tmp_path: Path, text: str = "") -> Process:
    output = tmp_path / f"{role}.log"
    output.write_text(text, encoding="utf-8")
    proc: Any = None  # never touched: samples are given
    return Process(role, proc, output, samples)


def test_headless_argv_runs_locust_as_a_module_with_reports_and_custom_options() -> None:
    """One process: `-m locust` headless with CSV, HTML, the run size and the user options."""
    argv = PLAN.master_argv()
    assert argv[1:3] == ["-m", "locust"]
    for flag, value in [("--host", "http://127.0.0.1:8000"), ("--users", "30"),
                        ("--run-time", "30s"), ("--csv", "/r/locust"),
                        ("--html", "/r/locust.html"), ("--interrupt-rate", "0.3")]:  # fmt: skip
        assert argv[argv.index(flag) + 1] == value
    assert "--headless" in argv and "--only-summary" in argv and "--master" not in argv


def test_distributed_argv_binds_the_master_on_loopback_and_points_workers_at_it() -> None:
    """--workers: the master expects N workers on 127.0.0.1:port; workers connect there."""
    master, worker = PLAN.master_argv(5599), PLAN.worker_argv(5599)
    assert master[master.index("--expect-workers") + 1] == "2"
    assert master[master.index("--master-bind-host") + 1] == "127.0.0.1"
    assert worker[worker.index("--master-host") + 1] == "127.0.0.1"
    assert worker[worker.index("--master-port") + 1] == "5599"
    assert "--worker" in worker and "--interrupt-rate" in worker


def test_the_locustfile_is_found_beside_cli_or_named_clearly_when_missing() -> None:
    """The default is the repository's loadtests/locustfile.py; a wrong path is a ConfigError."""
    assert locate_locustfile(None) == DEFAULT_LOCUSTFILE.resolve()
    with pytest.raises(ConfigError, match="no locustfile at"):
        locate_locustfile(Path("/nonexistent/locustfile.py"))


def test_a_saturated_worker_makes_the_generator_the_bottleneck(tmp_path: Path) -> None:
    """A worker whose median CPU sample is >= 85% of a core: generator-bound; the master's
    own CPU does not count (it runs no users)."""
    idle = LocustRun([process("master", [0.99, 0.99, 0.99], tmp_path),
                      process("worker-1", [0.2, 0.3, 0.25], tmp_path)], 0)  # fmt: skip
    assert not idle.generator_bound
    busy = LocustRun([process("master", [0.1], tmp_path),
                      process("worker-1", [0.5, 0.9, 0.95], tmp_path)], 0)  # fmt: skip
    assert busy.generator_bound


def test_locusts_own_cpu_warning_makes_the_generator_the_bottleneck(tmp_path: Path) -> None:
    """Low samples but locust warned (`CPU usage above 90%!`): generator-bound."""
    run = LocustRun([process("locust", [0.3], tmp_path)], 0,
                    cpu_warnings=["locust: CPU usage above 90%! This may constrain"])  # fmt: skip
    assert run.generator_bound


def test_the_way_to_speak_reaches_every_locust_process() -> None:
    """--dialect, --session-in, --target and --overlap go to the master and each worker."""
    plan = dataclasses.replace(
        PLAN, dialect="anthropic", session_in="body:metadata.sid",
        target=Path("/t/chat.toml"), overlap="independent",
    )  # fmt: skip
    wanted = {"--dialect": "anthropic", "--session-in": "body:metadata.sid",
              "--target": "/t/chat.toml", "--overlap": "independent"}  # fmt: skip
    for argv in (plan.master_argv(5599), plan.worker_argv(5599)):
        assert {flag: argv[argv.index(flag) + 1] for flag in wanted} == wanted
    assert "--dialect" not in PLAN.master_argv()  # unset: the locustfile's default holds


def test_the_reload_rate_reaches_every_locust_process() -> None:
    """--reload-rate goes to the master and each worker as the locustfile's own option;
    unset it is 0, said as such (no reloads)."""
    plan = dataclasses.replace(PLAN, reload_rate=0.25)
    for argv in (plan.master_argv(5599), plan.worker_argv(5599)):
        assert argv[argv.index("--reload-rate") + 1] == "0.25"
    argv = PLAN.master_argv()
    assert argv[argv.index("--reload-rate") + 1] == "0"


def test_flags_override_the_target_file_which_overrides_the_defaults(tmp_path: Path) -> None:
    """The file's dialect, session and health are used unless a flag names its own."""
    path = tmp_path / "chat.toml"
    path.write_text(TARGET, encoding="utf-8")
    from_file = chat_api(target=path)
    assert (from_file.dialect.name, str(from_file.session_in)) == ("target", "body:conv")
    assert (from_file.urls, from_file.probe_path) == (("http://127.0.0.1:9",), "/ping")
    flags = chat_api(target=path, dialect="anthropic", session_in="query:sid")
    assert (flags.dialect.name, str(flags.session_in)) == ("anthropic", "query:sid")
    plain = chat_api()
    assert (plain.dialect.name, str(plain.session_in)) == ("openai", "header:X-Session-Id")
    assert plain.probe_path == "/v1/models"


def test_a_bad_target_file_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    """A target whose stream.end is not event:NAME or data:LITERAL names that key."""
    path = tmp_path / "chat.toml"
    path.write_text(TARGET.replace('end = "data:[DONE]"', 'end = "[DONE]"'), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"stream\.end"):
        chat_api(target=path)
