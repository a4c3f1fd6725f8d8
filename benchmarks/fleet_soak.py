"""Soak a 2-worker fleet: `jarvis swarm` with interrupting users against `jarvis serve --workers 2`.

Starts a private Redis and `jarvis serve --workers 2 --registry redis://...`
(default pacing: 100 tokens/s, 75 ms flush), runs `jarvis swarm --url` at
it (200 users, 30% of conversations interrupted, 60 s, `--max-fail-ratio 0`),
stops the fleet gracefully, then runs `jarvis diagnose` over both workers'
logs together and over each alone. Target: 0 failures, 0 stale chunks.
Everything is stopped on the way out (also on Ctrl-C or SIGTERM). Run:
`.venv/bin/python benchmarks/fleet_soak.py [--quick] [--keep DIR] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _redis_proc import RedisServer, running_redis
from _report import REPO, machine, table, write_json
from _server_proc import (
    ServerProcess,
    jarvis_argv,
    machine_busy_seconds,
    processes,
    running,
    tree_cpu_seconds,
)

from jarvis.logfmt import parse_logfmt

SWARM_GRACE_S = 90.0
DIAGNOSE_TIMEOUT_S = 120.0


def locustfile(workdir: Path) -> Path:
    """The locustfile of the measured commit (run_at_commit.sh exports only jarvis/ and
    jarvis_cli/), else the checkout's."""
    where = machine()
    exported = Path(where["jarvis_from"]).parent / "COMMIT"
    if not exported.is_file():
        return REPO / "loadtests" / "locustfile.py"
    target = workdir / "loadtests-export"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", where["measured_commit"], "loadtests"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True, timeout=30)
    return target / "loadtests" / "locustfile.py"


class CpuTracker:
    """CPU of process trees, sampled while they run: a locust process's CPU is gone from
    /proc once it exits, so the last sample of each pid stands for it. A pid seen at the
    first sample counts from there; one that appears later, from its start."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.first: dict[int, float] = {}
        self.last: dict[str, dict[int, float]] = {}
        self.machine_start = machine_busy_seconds()
        self.machine_end = self.machine_start
        self.sample()
        self.first = {p: cpu for pids in self.last.values() for p, cpu in pids.items()}

    def sample(self) -> None:
        for name, pid in self.roots.items():
            self.last.setdefault(name, {}).update(tree_cpu_seconds(pid))
        self.machine_end = machine_busy_seconds()

    def used(self, name: str) -> float:
        return sum(cpu - self.first.get(p, 0.0) for p, cpu in self.last.get(name, {}).items())


def run_swarm(
    url: str, workdir: Path, args: argparse.Namespace, tracker: CpuTracker
) -> tuple[int, float]:
    """`jarvis swarm --url` as a subprocess, bounded; its output is printed as it ends."""
    report_dir = workdir / "swarm"
    argv = [
        sys.executable, "-m", "jarvis_cli", "swarm", "--url", url,
        "--users", str(args.users), "--spawn-rate", f"{args.spawn_rate:g}",
        "--run-time", f"{args.run_time:g}s", "--interrupt-rate", f"{args.interrupt_rate:g}",
        "--max-fail-ratio", "0", "--report-dir", str(report_dir),
        "--locustfile", str(locustfile(workdir)),
    ]  # fmt: skip
    print("$ " + " ".join(argv[1:]), flush=True)
    output = (workdir / "swarm.out").open("wb")
    env = {**os.environ, "COLUMNS": "120"}
    started = time.monotonic()
    with output:
        proc = subprocess.Popen(
            argv, stdout=output, stderr=subprocess.STDOUT, cwd=workdir, env=env,
            # Dies with the benchmark; checked to have no thread (nor has the tracker).
            preexec_fn=processes.kill_on_parent_death(),  # noqa: PLW1509
            start_new_session=True,  # so that its locust children can be stopped together
        )  # fmt: skip
        tracker.roots["swarm"] = proc.pid
        deadline = started + args.run_time + SWARM_GRACE_S
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"jarvis swarm still running after {deadline - started:.0f}s"
                    )
                tracker.sample()
                time.sleep(1.0)
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
    wall = time.monotonic() - started
    print((workdir / "swarm.out").read_text(encoding="utf-8", errors="replace"), flush=True)
    return proc.returncode, wall


def swarm_figures(report_dir: Path) -> dict[str, Any]:
    """What the swarm measured, read back with the swarm's own reader of locust's CSVs."""
    from jarvis_cli.swarm.thresholds import INTERRUPT_TTFT, TTFT, Figures

    figures = Figures.load(report_dir / "locust")
    ttft, interrupt = figures.sse(TTFT), figures.sse(INTERRUPT_TTFT)

    def pct(row: Any, label: str) -> float:
        return row.pct(label) if row is not None else math.nan

    return {
        "streams": figures.streams,
        "completed_streams": figures.completed,
        "stream_failures": figures.stream_failures,
        "failures_by_kind": figures.failures,
        "stale_chunks": figures.failures.get("StaleChunk", 0),
        "failed_requests": figures.request_failures,
        "text_checked_streams": figures.text_checked,
        "interrupts": interrupt.requests if interrupt is not None else 0,
        "ttft_ms": {"p50": pct(ttft, "50%"), "p99": pct(ttft, "99%")},
        "interrupt_to_first_token_ms": {"p50": pct(interrupt, "50%"), "p99": pct(interrupt, "99%")},
    }


def log_summary(path: Path) -> dict[str, Any]:
    """One worker's log: streams by end reason, supersedes and the registry's troubles."""
    counts: Counter[str] = Counter()
    ends: Counter[str] = Counter()
    interesting = (
        "event=stream_end",
        "event=prev_stream_",
        "event=registry_",
        "event=request_rejected",
        "event=stream_fenced",
        "event=loop_blocked",
    )
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not any(e in line for e in interesting):
                continue
            fields = parse_logfmt(line)
            event = str(fields.get("event"))
            counts[event] += 1
            if event == "stream_end":
                ends[str(fields.get("reason"))] += 1
    return {"events": dict(counts), "stream_end_reasons": dict(ends)}


def diagnose(paths: list[Path]) -> dict[str, Any]:
    """`jarvis diagnose PATHS --json`: its exit code, verdict and findings."""
    argv = [sys.executable, "-m", "jarvis_cli", "diagnose", *map(str, paths), "--json"]
    done = subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=DIAGNOSE_TIMEOUT_S
    )
    result: dict[str, Any] = {
        "command": "jarvis diagnose " + " ".join(p.name for p in paths),
        "exit_code": done.returncode,
    }
    try:
        report = json.loads(done.stdout)
    except ValueError:
        result["stderr"] = done.stderr[-1000:]
        return result
    coverage, stats = report.get("coverage", {}), report.get("stats", {})
    result["verdict"] = report.get("verdict")
    # A diagnose that merges several inputs by time lists them in coverage.inputs; one
    # that does not yet reads the files one after the other (coverage.sources).
    result["merged_by_time"] = len(coverage.get("inputs") or ()) > 1
    result["files_read"] = coverage.get("sources")
    result["streams"] = stats.get("streams")
    result["ended"] = stats.get("ended")
    result["cancel_wait_ms"] = stats.get("cancel_wait_ms")
    result["findings"] = [
        f"{f.get('severity')} {f.get('id')}: {f.get('message')}" for f in report.get("findings", [])
    ]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=200, help="swarm users (sessions)")
    parser.add_argument("--spawn-rate", type=float, default=50.0, help="users started per second")
    parser.add_argument("--run-time", type=float, default=60.0, help="swarm run time (s)")
    parser.add_argument(
        "--interrupt-rate", type=float, default=0.3, help="share of conversations interrupted"
    )
    parser.add_argument("--quick", action="store_true", help="50 users for 15 s")
    parser.add_argument("--keep", metavar="DIR", help="copy the logs and locust's reports here")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.users, args.run_time = 50, 15.0

    with tempfile.TemporaryDirectory(prefix="jarvis-bench-") as tmp:
        workdir = Path(tmp)
        logs = workdir / "logs"
        logs.mkdir()
        with running_redis(workdir) as redis:
            argv = jarvis_argv(logs / "system.log", "--registry", redis.url(0), "--workers", "2")
            with running(("fleet", argv), workdir=workdir) as (fleet,):
                time.sleep(1.0)  # /healthz answered: one worker is up, give the other a second
                print(
                    f"fleet_soak: jarvis serve --workers 2 --registry {redis.url(0)} on "
                    f"{fleet.url} (pid {fleet.pid}), redis pid {redis.pid}",
                    flush=True,
                )
                exit_code, wall, cpu = soak(fleet, redis, workdir, args)
            # The fleet has stopped: its workers' logs are complete.
        worker_logs = sorted(logs.glob("system.w*.log"))
        per_worker = {p.name: log_summary(p) for p in worker_logs}
        diagnoses = [diagnose(worker_logs)] + [diagnose([p]) for p in worker_logs]
        figures = swarm_figures(workdir / "swarm")
        if args.keep:
            keep = Path(args.keep)
            keep.mkdir(parents=True, exist_ok=True)
            for path in [*worker_logs, *workdir.glob("*.out")]:  # swarm, fleet, redis
                shutil.copy(path, keep / path.name)
            shutil.copytree(workdir / "swarm", keep / "swarm", dirs_exist_ok=True)

    results = {
        "settings": {
            "users": args.users,
            "spawn_rate": args.spawn_rate,
            "run_time_s": args.run_time,
            "interrupt_rate": args.interrupt_rate,
            "server": "jarvis serve --workers 2 --registry redis://127.0.0.1:PORT/0 (defaults)",
            "swarm": "jarvis swarm --url URL --max-fail-ratio 0 (other thresholds default)",
        },
        "swarm_exit_code": exit_code,
        "swarm_wall_s": wall,
        **figures,
        "target_met": figures["stream_failures"] == 0
        and figures["stale_chunks"] == 0
        and figures["streams"] > 0,
        # In cores over the swarm's run; "other processes" is the noise.
        "cpu_share": cpu,
        "worker_logs": per_worker,
        "diagnose": diagnoses,
    }
    report(results)
    write_json(args.json, "fleet_soak", results)
    return 0 if results["target_met"] else 1


def soak(
    fleet: ServerProcess, redis: RedisServer, workdir: Path, args: argparse.Namespace
) -> tuple[int, float, dict[str, float]]:
    tracker = CpuTracker({"fleet": fleet.pid, "redis": redis.pid})
    exit_code, wall = run_swarm(fleet.url, workdir, args, tracker)
    tracker.sample()
    cpu = {name: tracker.used(name) / wall for name in tracker.roots}
    machine_share = (tracker.machine_end - tracker.machine_start) / wall
    cpu["other processes"] = max(0.0, machine_share - sum(cpu.values()))
    return exit_code, wall, cpu


def report(results: dict[str, Any]) -> None:
    print()
    rows = [
        [
            results["streams"],
            results["completed_streams"],
            results["interrupts"],
            results["stream_failures"],
            results["stale_chunks"],
            results["ttft_ms"]["p99"],
            results["interrupt_to_first_token_ms"]["p99"],
            results["swarm_exit_code"],
        ]
    ]
    print(
        table(
            [
                "streams",
                "completed",
                "interrupts",
                "failures",
                "stale chunks",
                "p99 TTFT ms",
                "p99 interrupt ms",
                "swarm exit",
            ],
            rows,
        )
    )
    print(f"failures by kind: {results['failures_by_kind'] or 'none'}")
    cpu = ", ".join(f"{k} {v:.0%}" for k, v in results["cpu_share"].items())
    print(f"CPU (of a core) over {results['swarm_wall_s']:.0f}s: {cpu}")
    for name, log in results["worker_logs"].items():
        print(f"{name}: stream ends {log['stream_end_reasons']}; events {log['events']}")
    for d in results["diagnose"]:
        print(
            f"{d['command']}: exit {d['exit_code']}, verdict {d.get('verdict')}, "
            f"streams {d.get('streams')}, merged by time: {d.get('merged_by_time')}"
        )
        for finding in d.get("findings", [])[:5]:
            print(f"  {finding}")
        if "stderr" in d:
            print(f"  {d['stderr']}")
    verdict = "met" if results["target_met"] else "MISSED"
    print(f"\ntarget: 0 failures, 0 stale chunks: {verdict}")


if __name__ == "__main__":
    sys.exit(main())
