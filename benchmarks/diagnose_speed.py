"""How fast `jarvis diagnose` reads a big log, side by side with `grep -c stream_start`.

Generates (once, cached) a logfmt log like a busy jarvis server writes:
many sessions with interleaved streams, supersedes with their cleanup
sequence, 60% unrelated lines, and a few planted faults (concurrent streams,
a stuck flush, an unended stream, an incomplete cleanup, a blocked loop).
Then runs, alternately, `grep -c stream_start` and `jarvis diagnose --json`
on the same file, and reports MB/s, the ratio, peak RSS and whether every
planted fault was found.

    .venv/bin/python benchmarks/diagnose_speed.py            # 1 GB, ~10M lines
    .venv/bin/python benchmarks/diagnose_speed.py --quick    # 100 MB
    .venv/bin/python benchmarks/diagnose_speed.py --pure     # and the Python loop beside
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLANTED = {"concurrent_streams", "flush_stuck", "stream_not_ended", "cleanup_incomplete",
           "loop_blocked"}  # fmt: skip


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def generate(path: Path, target_bytes: int, seed: int = 1) -> None:
    """Write the synthetic log (about 40% lifecycle lines)."""
    rng = random.Random(seed)
    t = 1795317000.0
    out = path.open("w", encoding="utf-8", buffering=1 << 22)
    written = 0
    sid = 0
    live: list[list[object]] = []  # [n, session, remaining batches, state]
    noise = [
        "level=info event=http_request method=GET path=/healthz status=200 ms=0.4 "
        'client=127.0.0.1:51234 ua="probe/1.0"',
        'level=info logger=uvicorn.access msg="127.0.0.1:40000 - POST /v1/chat/completions '
        'HTTP/1.1 200"',
        "level=debug event=cache_lookup key=prompt:7f3a hit=True ms=0.02 shard=3",
    ]
    planted_at = {int(target_bytes * f): name for f, name in (
        (0.2, "concurrent"), (0.4, "stuck"), (0.6, "unended"), (0.7, "incomplete"),
        (0.8, "blocked"))}  # fmt: skip
    pending = sorted(planted_at)
    lines: list[str] = []

    def w(text: str) -> None:
        lines.append(f"ts={stamp(t)} {text}")

    while written < target_bytes:
        t += 0.0007
        if len(live) < 300 or rng.random() < 0.02:
            sid += 1
            session = f"s{sid % 20011}"  # a prime: never two live streams in one session
            w(f"level=info event=stream_start trace={sid:016x} session={session} "
              f"stream_id=chatcmpl-{sid:024x} model=jarvis-synthetic prompt_chars=31")  # fmt: skip
            w(f"level=info event=stream_registered trace={sid:016x} session={session} "
              f"stream_id=chatcmpl-{sid:024x} generation=1")  # fmt: skip
            live.append([sid, session, rng.randrange(3, 14)])
        stream = live[rng.randrange(len(live))]
        n, session, left = stream
        rid = f"chatcmpl-{n:024x}"
        if left > 0:
            w(f"level=info event=flush_scheduled request_id={rid} delay_ms=75.0")
            w(f"level=info event=flush_start request_id={rid} size=41")
            w(f"level=info event=flush_done request_id={rid} tokens_sent=8 size=41")
            stream[2] = left - 1
        else:
            superseded = rng.random() < 0.15
            if superseded:
                w(f"level=info event=stream_cancelled trace={n:016x} session={session} "
                  f"stream_id={rid} reason=registry_new_stream")  # fmt: skip
                w(f"level=info event=flush_on_cleanup request_id={rid} size=12")
                w(f"level=info event=flush_start request_id={rid} size=12")
                w(f"level=info event=flush_done request_id={rid} tokens_sent=2 size=12")
            w(f"level=info event=cleanup_buffer request_id={rid}")
            w(f"level=info event=event_buffers_cleaned trace={n:016x} request_id={rid}")
            reason = "superseded" if superseded else "completed"
            w(f"level=info event=stream_end trace={n:016x} session={session} stream_id={rid} "
              f"duration_ms={rng.randrange(80, 4000)} reason={reason} tokens=40 "
              "cleanup_done=True")  # fmt: skip
            live.remove(stream)
        for _ in range(rng.choice((2, 3, 4, 5, 6, 7))):  # ~60% of lines are not lifecycle
            w(noise[rng.randrange(3)])
        if pending and written >= pending[0]:
            kind = planted_at[pending.pop(0)]
            sid += 1
            m = sid
            if kind == "concurrent":
                sid += 1
                for k in (m, m + 1):
                    w(f"level=info event=stream_start trace={k:016x} session=twin "
                      f"stream_id=chatcmpl-{k:024x} model=m prompt_chars=3")  # fmt: skip
                    w(f"level=info event=flush_start request_id=chatcmpl-{k:024x} size=4")
                    w(f"level=info event=flush_done request_id=chatcmpl-{k:024x} "
                      "tokens_sent=4 size=4")  # fmt: skip
                for k in (m, m + 1):
                    w(f"level=info event=event_buffers_cleaned trace={k:016x} "
                      f"request_id=chatcmpl-{k:024x}")  # fmt: skip
                    w(f"level=info event=stream_end trace={k:016x} session=twin "
                      f"stream_id=chatcmpl-{k:024x} duration_ms=9 reason=completed tokens=4 "
                      "cleanup_done=True")  # fmt: skip
            elif kind == "stuck":
                w(f"level=info event=flush_start request_id=chatcmpl-stuck{m} size=4")
            elif kind == "unended":
                w(f"level=info event=stream_start trace={m:016x} session=lost "
                  f"stream_id=chatcmpl-{m:024x} model=m prompt_chars=3")  # fmt: skip
            elif kind == "incomplete":
                w(f"level=info event=stream_start trace={m:016x} session=dirty "
                  f"stream_id=chatcmpl-{m:024x} model=m prompt_chars=3")  # fmt: skip
                w(f"level=info event=stream_end trace={m:016x} session=dirty "
                  f"stream_id=chatcmpl-{m:024x} duration_ms=9 reason=completed tokens=0 "
                  "cleanup_done=False")  # fmt: skip
            else:
                w(
                    "level=error event=loop_blocked lag_ms=900 "
                    'stack="jarvis/faults.py:60:blocking_flush <- jarvis/events.py:170:_flush"'
                )
        if len(lines) >= 20000:
            chunk = "\n".join(lines) + "\n"
            out.write(chunk)
            written += len(chunk)
            lines.clear()
    # the tail: a minute later, so the unended stream is stale
    t += 60
    w("level=info event=loop_lag lag_ms=1 max_lag_ms=3 active_streams=0")
    out.write("\n".join(lines) + "\n")
    out.close()


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS of the child in MB, stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False, env=env)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before) / 1024, proc.stdout


def log_options(doc: str) -> argparse.ArgumentParser:
    """The options of a benchmark over the synthetic log (this one and timeline_size)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 MB instead of 1 GB")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--log", type=Path, default=None, help="reuse or create this log")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    return parser


def bench_log(args: argparse.Namespace) -> tuple[Path, int]:
    """The synthetic log the options ask for (made once, then reused) and its size in MB."""
    size = 100 if args.quick else args.size_mb
    path = args.log or Path(tempfile.gettempdir()) / f"jarvis-diagnose-bench-{size}mb.log"
    if not path.exists() or path.stat().st_size < size * 1_000_000:
        print(f"generating {path} ({size} MB)…", flush=True)
        generate(path, size * 1_000_000)
    return path, size


def main() -> int:
    parser = log_options(__doc__)
    parser.add_argument(
        "--pure", action="store_true", help="also time the Python loop (JARVIS_DIAGNOSE_PURE=1)"
    )
    args = parser.parse_args()
    path, _ = bench_log(args)
    nbytes = path.stat().st_size
    with path.open("rb") as handle:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b""))
    with path.open("rb") as handle:
        lifecycle = sum(
            1 for line in handle
            if b"event=stream_" in line or b"event=flush_" in line or b"event=cleanup_" in line
            or b"event=event_buffers" in line or b"event=loop_" in line
        )  # fmt: skip
    jarvis = [sys.executable, "-m", "jarvis_cli", "diagnose", str(path), "--json"]
    grep_s, diag_s, pure_s, peaks = [], [], [], []
    found: set[str] = set()
    engine = "?"
    for _ in range(args.rounds):
        g, _, _ = run(["grep", "-c", "stream_start", str(path)])
        d, peak, stdout = run(jarvis)
        grep_s.append(g)
        diag_s.append(d)
        peaks.append(peak)
        report = json.loads(stdout)
        found = {f["id"] for f in report["findings"]}
        engine = report["coverage"].get("engine", "?")
        if args.pure:
            p, _, stdout = run(jarvis, env={**os.environ, "JARVIS_DIAGNOSE_PURE": "1"})
            pure_s.append(p)
            if {f["id"] for f in json.loads(stdout)["findings"]} != found:
                print("the Python loop found other faults than the default one")
    diag = min(diag_s)
    grep = min(grep_s)
    figures = {
        "bytes": nbytes,
        "lines": lines,
        "lifecycle_share": round(lifecycle / lines, 3),
        "grep_mb_s": round(nbytes / grep / 1e6, 1),
        "diagnose_mb_s": round(nbytes / diag / 1e6, 1),
        "engine": engine,
        "pure_python_mb_s": round(nbytes / min(pure_s) / 1e6, 1) if pure_s else None,
        "diagnose_seconds": round(diag, 2),
        "grep_over_diagnose": round(diag / grep, 2),
        "peak_rss_mb": round(max(peaks), 1),
        "planted_found": sorted(PLANTED & found),
        "planted_missed": sorted(PLANTED - found),
        "unexpected": sorted(found - PLANTED),
    }
    print(f"log: {nbytes / 1e6:.0f} MB, {lines:,} lines, {lifecycle / lines:.0%} lifecycle")
    print(f"grep -c stream_start : {figures['grep_mb_s']:>7} MB/s")
    print(f"jarvis diagnose      : {figures['diagnose_mb_s']:>7} MB/s "
          f"({diag:.2f} s end to end, {figures['grep_over_diagnose']}x grep's time; "
          f"{engine} loop)")  # fmt: skip
    if pure_s:
        print(f"  Python loop (PURE) : {figures['pure_python_mb_s']:>7} MB/s "
              f"({min(pure_s):.2f} s end to end)")  # fmt: skip
    print(f"peak RSS             : {figures['peak_rss_mb']} MB")
    print(f"planted faults found : {figures['planted_found']}; missed {figures['planted_missed']}"
          f"; unexpected {figures['unexpected']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if not figures["planted_missed"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
