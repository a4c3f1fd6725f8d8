"""Output shared by the benchmarks: a plain text table, percentiles, and the --json file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A left-aligned text table; floats get 3 significant decimals."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    """Where and on what the figures were taken.

    The measured code is the `jarvis` package imported here (the servers import
    the same one): this checkout, or an export made by `run_at_commit.sh`, whose
    `COMMIT` file names the commit it holds.
    """
    import jarvis

    source = Path(jarvis.__file__).resolve().parent
    marker = source.parent / "COMMIT"
    exported = source != REPO / "jarvis" and marker.is_file()
    head = _git("rev-parse", "--short", "HEAD") or None
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "measured_commit": marker.read_text(encoding="utf-8").strip() if exported else head,
        "jarvis_from": str(source),
        # Uncommitted server changes in the checkout mean its HEAD does not name what ran.
        "uncommitted_server_changes": []
        if exported
        else _git("status", "--porcelain", "--", "jarvis", "jarvis_cli").splitlines(),
        "checkout_head": head,
        "loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(path: str | None, benchmark: str, results: dict[str, Any]) -> None:
    """Write `results` with the machine note to `path` (no-op when `path` is None)."""
    if path is None:
        return
    document = {"benchmark": benchmark, "machine": machine(), **results}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {path}")
