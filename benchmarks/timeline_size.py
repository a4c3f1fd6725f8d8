"""What `--html` costs `jarvis diagnose` on a big log: the page's size, and the time and
memory beside the same read without it.

The log is diagnose_speed's synthetic one (generated once, cached): many sessions
with interleaved streams and supersedes, 60% unrelated lines and planted faults.
Runs `jarvis diagnose LOG --json` and `jarvis diagnose LOG --json --html PAGE`
alternately, and reports the page's size (target: at most about 5 MB for a 1 GB
log), the time ratio, both peak RSS, and whether the exit codes are the same.

    .venv/bin/python benchmarks/timeline_size.py            # 1 GB
    .venv/bin/python benchmarks/timeline_size.py --quick    # 100 MB
    .venv/bin/python benchmarks/timeline_size.py --browser  # and time the page in Chromium
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import REPO
from diagnose_speed import bench_log, log_options

TARGET_MB = 5.0


def run(argv: list[str]) -> tuple[float, float, int, str]:
    """Wall seconds, the child's peak RSS in MB (the largest child so far), exit code,
    stdout."""
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return elapsed, peak, proc.returncode, proc.stdout


def in_browser(page: Path) -> dict[str, float | int]:
    """Seconds for the page to draw in Debian's Chromium, then to search, to open a
    finding and to zoom out five times (tests/browser.py's launcher), and its errors."""
    sys.path.insert(0, str(REPO))
    from tests.browser import open_browser

    figures: dict[str, float | int] = {}
    with open_browser(width=1400, height=800, timeout_s=60) as tab:
        p = tab.page
        start = time.perf_counter()
        p.goto(page.as_uri())
        p.wait_for_selector("body[data-ready='1']")
        figures["ready_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        p.get_by_test_id("search").fill("s1")
        p.get_by_test_id("matches").inner_text()
        figures["search_s"] = round(time.perf_counter() - start, 2)
        p.get_by_test_id("search").fill("")
        start = time.perf_counter()
        p.get_by_test_id("finding").first.click()
        p.get_by_test_id("evidence").first.inner_text()
        figures["finding_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        for _ in range(5):
            p.get_by_test_id("zoom-out").click()
        figures["five_zooms_s"] = round(time.perf_counter() - start, 2)
        figures["errors"] = len(tab.errors)
    return figures


def main() -> int:
    parser = log_options(__doc__)
    parser.add_argument("--browser", action="store_true", help="also time the page in Chromium")
    args = parser.parse_args()
    path, size = bench_log(args)
    page = Path(tempfile.gettempdir()) / f"jarvis-timeline-bench-{size}mb.html"
    plain = [sys.executable, "-m", "jarvis_cli", "diagnose", str(path), "--json"]
    drawn = [*plain, "--html", str(page)]
    plain_s, drawn_s = [], []
    # ru_maxrss of children is the largest child so far: the html run goes first, so the
    # peak read after it is its own; the plain run's is measured in a fresh process below.
    peak_drawn = peak_plain = 0.0
    codes: set[tuple[int, int]] = set()
    for _ in range(args.rounds):
        d, peak_drawn, code_drawn, out_drawn = run(drawn)
        p, _, code_plain, out_plain = run(plain)
        drawn_s.append(d)
        plain_s.append(p)
        codes.add((code_plain, code_drawn))
        same = json.loads(out_plain)["findings"] == json.loads(out_drawn)["findings"]
        if not same:
            print("the findings differ with --html")
    # The plain run's own peak, from a fresh measuring process.
    probe = subprocess.run(
        [sys.executable, "-c", "import resource, subprocess, sys; "
         "subprocess.run(sys.argv[1:], capture_output=True, check=False); "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)", *plain],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    peak_plain = float(probe.stdout.strip() or "nan")
    html_mb = page.stat().st_size / 1e6
    data = page.read_text(encoding="utf-8")
    start = data.index('id="timeline-data">') + len('id="timeline-data">')
    shown = json.loads(data[start : data.index("</script>", start)])
    figures = {
        "log_bytes": path.stat().st_size,
        "html_mb": round(html_mb, 2),
        "target_mb": TARGET_MB,
        "lanes": len(shown["lanes"]),
        "bars": len(shown["bars"]["lane"]),
        "markers": len(shown["markers"]["lane"]),
        "density_cells": len(shown["density"]["n"]),
        "density_bin_ms": shown["density"]["bin_ms"],
        "notes": shown["notes"],
        "plain_seconds": round(min(plain_s), 2),
        "html_seconds": round(min(drawn_s), 2),
        "time_ratio": round(min(drawn_s) / min(plain_s), 2),
        "peak_rss_mb_plain": round(peak_plain, 1),
        "peak_rss_mb_html": round(peak_drawn, 1),
        "exit_codes_plain_html": sorted(codes),
    }
    print(f"log: {figures['log_bytes'] / 1e6:.0f} MB")
    print(f"page: {html_mb:.2f} MB (target <= {TARGET_MB} MB); {figures['lanes']} lanes, "
          f"{figures['bars']} bars, {figures['markers']} markers, {figures['density_cells']} "
          f"density cells of {figures['density_bin_ms']} ms")  # fmt: skip
    for note in shown["notes"]:
        print(f"  note on the page: {note}")
    print(f"diagnose --json         : {figures['plain_seconds']:.2f} s, "
          f"peak RSS {figures['peak_rss_mb_plain']} MB")  # fmt: skip
    print(f"diagnose --json --html  : {figures['html_seconds']:.2f} s, peak RSS "
          f"{figures['peak_rss_mb_html']} MB ({figures['time_ratio']}x the time)")  # fmt: skip
    print(f"exit codes (plain, html): {sorted(codes)}")
    if args.browser:
        figures["browser"] = shown_in = in_browser(page)
        print(f"in Chromium: drawn in {shown_in['ready_s']} s; search {shown_in['search_s']} s, "
              f"a finding {shown_in['finding_s']} s, five zooms {shown_in['five_zooms_s']} s; "
              f"{shown_in['errors']} console errors")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    ok = html_mb <= TARGET_MB and all(a == b for a, b in codes)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
