"""How many interrupting users a server holds within its thresholds: `jarvis swarm
--find-max` against `jarvis serve` (synthetic model), llama.cpp itself, and `jarvis serve
--upstream` in front of the same llama.cpp; with per-token ITL beside the per-chunk gap.

Each target is started on a loopback port (port 0, read back) and searched with
`jarvis swarm --find-max --url ...` as a subprocess, bounded: short steady levels,
doubling from a start until a level crosses a threshold, then bisecting. Every answer is
32 tokens (`--max-tokens 32`, so the slow engine finishes its answers within a level).
`jarvis serve` is held to the CI gate's thresholds (p99 TTFT 500 ms, p99 interrupt
1,000 ms, 1% failed; 10 s levels); the two llama.cpp targets to the same engine
thresholds (p99 TTFT 3 s, p99 interrupt 3 s, 5% failed; 30 s levels), so they compare
side by side: llama.cpp runs a session's prompts side by side (`--overlap independent`,
an interrupted user holds two slots), `jarvis serve --upstream` supersedes (the old
answer's request to the engine is cancelled). The engine is real llama.cpp
(`tests/engines/llamacpp.py`: gemma 270m, 4 slots, 2 threads), warmed by one answer.
The curve of each and the largest user count that held are printed; `--json PATH` keeps
them with the machine note.

    .venv/bin/python benchmarks/swarm_find_max.py [--quick] [--targets serve,llamacpp,upstream]
        [--level-time S] [--json PATH] [--keep DIR]

About 8 minutes (`--quick`: half-length levels, a lower ceiling for jarvis serve, ~4).
On a shared 2-core machine the figures are noisy (levels are short, and the load
generator shares the cores with the server and the engine): compare the targets of one
run side by side, not runs with each other.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _report import REPO, table, write_json

sys.path.append(str(REPO))  # after any commit export on PYTHONPATH (run_at_commit.sh)

from tests import processes

#: The synthetic server's thresholds: the CI gate's (.ci/run).
FAST = ("--max-p99-ttft-ms", "500", "--max-p99-interrupt-ms", "1000", "--max-fail-ratio", "0.01")
#: The engine's: a first token within a few seconds (the prompt waits for a free slot), and
#: 5% failed, since a level holds a few dozen streams (one failure is several percent).
ENGINE = ("--max-p99-ttft-ms", "3000", "--max-p99-interrupt-ms", "3000",
          "--max-fail-ratio", "0.05")  # fmt: skip
#: Every target's answers: short, so the engine finishes them within a level.
MAX_TOKENS = "32"
#: Beyond the levels themselves: locust's start and stop, a settle pause, per level.
LEVEL_GRACE_S = 30.0


@dataclass(frozen=True)
class Target:
    """A server to search, and how: where the search starts, its ceiling, its overlap."""

    name: str
    start: int
    ceiling: int
    overlap: str
    #: Seconds per level: the engine's answers take seconds, so its levels are longer
    #: (a level shorter than an answer measures no stream at all).
    level_s: float
    thresholds: tuple[str, ...]


def targets(quick: bool) -> dict[str, Target]:
    short = 0.5 if quick else 1.0
    return {
        "serve": Target("jarvis serve (synthetic, 100 tok/s, 75 ms flush)", 10,
                        160 if quick else 640, "supersede", 10 * short, FAST),
        "llamacpp": Target("llama.cpp (gemma 270m, 4 slots, 2 threads)", 1, 8, "independent",
                           30 * short, ENGINE),
        "upstream": Target("jarvis serve --upstream llama.cpp", 1, 8, "supersede", 30 * short,
                           ENGINE),
    }  # fmt: skip


def most_levels(start: int, ceiling: int) -> int:
    from jarvis_cli.swarm.findmax import Search

    return Search(start, ceiling).most_levels


def find_max(name: str, target: Target, url: str, level_s: float, workdir: Path) -> dict[str, Any]:
    """`jarvis swarm --find-max --url` as a subprocess, bounded; its curve (find-max.json)."""
    report_dir = workdir / name
    argv = [
        sys.executable, "-m", "jarvis_cli", "swarm", "--find-max", "--url", url,
        "--start-users", str(target.start), "--max-users", str(target.ceiling),
        "--level-time", f"{level_s:g}s", "--overlap", target.overlap,
        "--max-tokens", MAX_TOKENS, *target.thresholds, "--report-dir", str(report_dir),
    ]  # fmt: skip
    print("$ jarvis " + " ".join(argv[3:]), flush=True)
    bound = most_levels(target.start, target.ceiling) * (level_s + LEVEL_GRACE_S)
    env = {**os.environ, "COLUMNS": "160"}
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, start_new_session=True,
        preexec_fn=processes.kill_on_parent_death(),  # noqa: PLW1509 - checked: no thread
    )  # fmt: skip
    try:
        code = proc.wait(bound)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        raise RuntimeError(f"jarvis swarm --find-max ran past {bound:.0f}s") from None
    curve = json.loads((report_dir / "find-max.json").read_text(encoding="utf-8"))
    curve["exit_code"] = code
    curve["wall_s"] = round(time.monotonic() - started, 1)
    return curve


def _ms(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:,.0f}"


def curve_rows(name: str, curve: dict[str, Any]) -> list[list[object]]:
    rows: list[list[object]] = []
    for level in curve["levels"]:
        itl = _ms(level["p50_itl_ms"]) + (" est." if level["itl_source"] == "estimate" else "")
        rows.append([
            name, level["users"], "yes" if level["passed"] else "no",
            _ms(level["p99_ttft_ms"]), _ms(level["p99_interrupt_ms"]),
            f"{(level['fail_ratio'] or 0):.2%}", f"{level['streams_per_s']:,.1f}",
            f"{level['tokens_per_s']:,.0f}", itl, _ms(level["p50_chunk_gap_ms"]),
            ", ".join(level["crossed"]) + (" (generator saturated)"
                                           if level["generator_bound"] else ""),
        ])  # fmt: skip
    return rows


def start_engine(workdir: Path) -> processes.Process:
    """llama.cpp on a loopback port, warmed by one short answer (its first one loads what
    the first level should not pay for)."""
    engine = processes.start(
        [sys.executable, "-m", "tests.engines.llamacpp", "--port", "0", "--slots", "4",
         "--threads", "2"],
        name="llamacpp", workdir=workdir, cwd=REPO, ready="/health", deadline_s=90,
        die_with_parent=True,
    )  # fmt: skip
    body = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}
    httpx.post(f"{engine.url}/v1/chat/completions", json=body, timeout=60).raise_for_status()
    return engine


def start_serve(workdir: Path, name: str, *options: str) -> processes.Process:
    return processes.start(
        [sys.executable, "-m", "jarvis_cli", "serve", "--host", processes.HOST, "--port", "0",
         "--log-file", str(workdir / f"{name}.log"), *options],
        name=name, workdir=workdir, die_with_parent=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s levels, lower ceilings")
    parser.add_argument("--targets", default="serve,llamacpp,upstream",
                        help="which of serve, llamacpp, upstream (comma-separated)")  # fmt: skip
    parser.add_argument("--level-time", type=float, default=None,
                        help="seconds per level, every target (default: jarvis serve 10, "
                        "the llama.cpp targets 20; half with --quick)")  # fmt: skip
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--keep", help="copy every level's reports to this folder")
    args = parser.parse_args()
    known = targets(args.quick)
    chosen = [name.strip() for name in args.targets.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown:
        parser.error(f"--targets takes serve, llamacpp, upstream, not {', '.join(unknown)}")
    curves: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="swarm-find-max-") as tmp:
        workdir = Path(tmp)
        started: list[processes.Process] = []
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            engine = None
            if {"llamacpp", "upstream"} & set(chosen):
                engine = start_engine(workdir)
                started.append(engine)
            for name in chosen:
                target = known[name]
                if name == "llamacpp":
                    assert engine is not None
                    url = engine.url
                else:
                    upstream = ("--upstream", engine.url) if name == "upstream" and engine else ()
                    server = start_serve(workdir, name, *upstream)
                    started.append(server)
                    url = server.url
                level_s = args.level_time or target.level_s
                curves[name] = find_max(name, target, url, level_s, workdir)
                curves[name]["target"] = target.name
                curves[name]["flags"] = list(target.thresholds)
                if name != "llamacpp":
                    server.stop(timeout=5)
                    started.remove(server)
        finally:
            for process in reversed(started):
                process.stop(timeout=5)
            signal.signal(signal.SIGTERM, previous)
            if args.keep:
                shutil.copytree(workdir, args.keep, dirs_exist_ok=True)
    headers = ["target", "users", "held", "p99 TTFT ms", "p99 interrupt ms", "failed",
               "streams/s", "tokens/s", "ITL/token p50 ms", "chunk gap p50 ms",
               "crossed"]  # fmt: skip
    rows = [row for name, curve in curves.items() for row in curve_rows(name, curve)]
    print()
    print(table(headers, rows))
    print()
    for name, curve in curves.items():
        found = curve["max_users_meeting_thresholds"]
        print(f"{name}: {curve['verdict']} (exit {curve['exit_code']}, {curve['wall_s']:g} s; "
              f"{found if found is not None else 'no'} users)")  # fmt: skip
    write_json(args.json, "swarm_find_max", {
        "max_tokens": int(MAX_TOKENS),
        "curves": curves,
    })  # fmt: skip


if __name__ == "__main__":
    main()
