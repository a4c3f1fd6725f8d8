"""Import and start-up cost: `import jarvis` (and `from jarvis import StreamGuard`)
beside `import starlette.responses`, and `jarvis diagnose` on a one-line log beside a
bare `python -c pass`.

The library should cost a user's app about what the Starlette response it builds on
costs (target: `import jarvis` <= 1.3x `import starlette.responses`), and a CLI command
should import only what it uses (target: `jarvis diagnose` on a one-line log <= 0.35 s).
Each pair runs in turn (A B A B ...), in fresh interpreters, so the ratio holds when the
shared machine's speed drifts; an import figure is the import's time measured inside a
fresh interpreter, a command figure the whole process's wall time.

    .venv/bin/python benchmarks/startup.py [--runs 21] [--json PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import median, table, write_json

LINE = (
    "ts=2026-12-07T00:00:00.000Z level=info event=stream_start session=s stream_id=a "
    "trace=t prompt_chars=5\n"
)


def import_us(statement: str) -> int:
    """Microseconds `statement` (an import) took in a fresh interpreter, timed inside it."""
    code = (
        "import time; t = time.perf_counter()\n"
        f"{statement}\n"
        "print(round((time.perf_counter() - t) * 1e6))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return int(done.stdout)


def wall_s(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, timeout=60, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="pairs of each comparison")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    runs = max(3, args.runs)

    statements = (
        "import starlette.responses",
        "import jarvis",
        # What an app that builds a guard pays: the guard's modules, Starlette and asyncio.
        "from jarvis import StreamGuard",
    )
    imports: dict[str, list[int]] = {s: [] for s in statements}
    ratios: list[float] = []
    guard_ratios: list[float] = []
    for _ in range(runs):
        base, ours, guard = (import_us(s) for s in statements)
        for statement, us in zip(statements, (base, ours, guard), strict=True):
            imports[statement].append(us)
        ratios.append(ours / base)
        guard_ratios.append(guard / base)

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "one.log"
        log.write_text(LINE, encoding="utf-8")
        jarvis = str(Path(sys.executable).parent / "jarvis")
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "jarvis diagnose one.log": [jarvis, "diagnose", str(log)],
            "jarvis --help": [jarvis, "--help"],
        }
        walls: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                walls[name].append(wall_s(argv))

    rows: list[list[object]] = [
        [m, median(v) / 1000, min(v) / 1000, max(v) / 1000] for m, v in imports.items()
    ]
    rows += [[name, median(v) * 1000, min(v) * 1000, max(v) * 1000] for name, v in walls.items()]
    print(table(["what", "median ms", "min ms", "max ms"], rows))
    ratio = median(ratios)
    diagnose_s = median(walls["jarvis diagnose one.log"])
    guard_ratio = median(guard_ratios)
    print(f"\nimport jarvis / import starlette.responses: {ratio:.2f}x (median of {runs} runs;")
    print(f"target <= 1.3x); from jarvis import StreamGuard: {guard_ratio:.2f}x")
    print(f"jarvis diagnose on a one-line log: {diagnose_s:.3f} s (target <= 0.35 s)")
    write_json(
        args.json,
        "startup",
        {
            "runs": runs,
            "import_us": imports,
            "import_ratio_median": ratio,
            "guard_import_ratio_median": guard_ratio,
            "wall_s": walls,
            "diagnose_one_line_s_median": diagnose_s,
        },
    )


if __name__ == "__main__":
    main()
