"""Logs of a fleet, one file per worker, written by jarvis's own logfmt encoder on one clock.

Each scenario schedules the lines every worker writes, in the order a fleet with a
shared registry writes them (the Redis registry's supersede: the new worker publishes
cancel, the owner cancels, cleans up, logs stream_end and releases, the new worker's
wait ends with prev_stream_finished_cleanly); `LogBuilder` (`format_logfmt`) renders
each worker's lines into its own `system.wN.log`. `python -m tests.fleetfixtures`
writes them to tests/logs/fleet/<scenario>/ with an expected.json beside them; a test
regenerates them and checks that nothing drifted.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .logfixtures import (
    BARE_SUPERSEDE_ANNOTATED,
    BARE_SUPERSEDE_TIMESTAMPED,
    LogBuilder,
    garble,
    healthy_supersede,
    random_log,
)

#: 2026-11-30T06:00:00Z: the first line's time.
FLEET_EPOCH = 1796018400.0
REDIS_URL = "redis://10.0.0.9:6379/0"
FLEET = Path(__file__).parent / "logs" / "fleet"


@dataclass(order=True, slots=True)
class _Line:
    t: float
    seq: int
    worker: int = field(compare=False)
    level: str = field(compare=False)
    event: str = field(compare=False)
    fields: dict[str, object] = field(compare=False)


@dataclass(slots=True)
class Fleet:
    """The lines of several workers on one clock; `render()` gives each worker's file."""

    findings: frozenset[str] = frozenset()
    lines: list[_Line] = field(default_factory=list)

    def log(
        self, t: float, worker: int, event: str, level: str = "info", /, **fields: object
    ) -> None:
        self.lines.append(_Line(t, len(self.lines), worker, level, event, fields))

    def server_start(
        self, t: float, worker: int, pid: int, *, registry: str = REDIS_URL, host: str = "0.0.0.0"
    ) -> None:
        self.log(t, worker, "server_start", version="0.9.0", host=host, port=8000, pid=pid,
                 source="synthetic", log_format="logfmt", cancel_wait_ms=2000, flush_ms=75,
                 flush_bytes=1024, faults="none", registry=registry, worker=worker)  # fmt: skip

    def stream(
        self,
        t: float,
        worker: int,
        n: int,
        session: str,
        batches: int,
        *,
        generation: int = 1,
        wait_for: int | None = None,
        keep_pending: bool = False,
    ) -> float:
        """A stream from its stream_start: registered (after waiting `wait_for`'s end if
        given), `batches` debounced flushes 80 ms apart. Returns when its last batch is
        done; `end()` or `superseded()` finishes it."""
        trace, sid = _trace(n), _sid(n)
        self.log(t, worker, "stream_start", trace=trace, session=session, stream_id=sid,
                 model="jarvis-synthetic", prompt_chars=31)  # fmt: skip
        t += 0.0004
        if wait_for is not None:
            t = self._registered_after(t, worker, n, session, generation, wait_for)
        else:
            self.log(t, worker, "stream_registered", trace=trace, session=session,
                     stream_id=sid, generation=generation)  # fmt: skip
        for _ in range(batches):
            t += 0.005
            self.log(t, worker, "flush_scheduled", request_id=sid, delay_ms=75.0)
            t += 0.075
            self.log(t, worker, "flush_start", request_id=sid, size=41)
            self.log(t + 0.0002, worker, "flush_done", request_id=sid, tokens_sent=8, size=41)
        if keep_pending:
            t += 0.005
            self.log(t, worker, "flush_scheduled", request_id=sid, delay_ms=75.0)
        return t + 0.001

    def _registered_after(
        self, t: float, worker: int, n: int, session: str, generation: int, prev: int
    ) -> float:
        """The wait for the previous owner `prev`: it ended 4 ms after the cancel."""
        t += 0.0062
        self.log(t, worker, "prev_stream_finished_cleanly", session=session, trace=_trace(n),
                 prev_trace=_trace(prev), waited_ms=6)  # fmt: skip
        self.log(t + 0.0001, worker, "stream_registered", trace=_trace(n), session=session,
                 stream_id=_sid(n), generation=generation)  # fmt: skip
        return t + 0.0001

    def end(self, t: float, worker: int, n: int, session: str, *, tokens: int = 48) -> float:
        """The token source ended: what is left is flushed, then the cleanup and stream_end."""
        sid = _sid(n)
        self.log(t, worker, "flush_on_end", request_id=sid, size=9)
        self.log(t + 0.0001, worker, "flush_start", request_id=sid, size=9)
        self.log(t + 0.0003, worker, "flush_done", request_id=sid, tokens_sent=2, size=9)
        self.log(t + 0.0005, worker, "cleanup_buffer", request_id=sid)
        self.log(t + 0.0006, worker, "event_buffers_cleaned", trace=_trace(n), request_id=sid)
        self.log(t + 0.0008, worker, "stream_end", trace=_trace(n), session=session,
                 stream_id=sid, duration_ms=500, reason="completed", tokens=tokens,
                 cleanup_done=True)  # fmt: skip
        return t + 0.001

    def superseded(self, t: float, worker: int, n: int, session: str) -> float:
        """Told to stop by a newer prompt (in any worker): cancel, cleanup, stream_end."""
        sid = _sid(n)
        self.log(t, worker, "stream_cancelled", trace=_trace(n), session=session,
                 stream_id=sid, reason="registry_new_stream")  # fmt: skip
        self.log(t + 0.0002, worker, "cleanup_flush_task", request_id=sid)
        self.log(t + 0.0003, worker, "flush_cancelled", request_id=sid)
        self.log(t + 0.0004, worker, "flush_on_cleanup", request_id=sid, size=13)
        self.log(t + 0.0005, worker, "flush_start", request_id=sid, size=13)
        self.log(t + 0.0007, worker, "flush_done", request_id=sid, tokens_sent=3, size=13)
        self.log(t + 0.0008, worker, "cleanup_buffer", request_id=sid)
        self.log(t + 0.0009, worker, "event_buffers_cleaned", trace=_trace(n), request_id=sid)
        self.log(t + 0.0030, worker, "stream_end", trace=_trace(n), session=session,
                 stream_id=sid, duration_ms=321, reason="superseded", tokens=27,
                 cleanup_done=True)  # fmt: skip
        return t + 0.0031

    def loop_lag(self, t: float, worker: int, active: int) -> None:
        self.log(t, worker, "loop_lag", lag_ms=0.4, max_lag_ms=2.1, active_streams=active)

    def render(self) -> dict[int, str]:
        """Each worker's file, its lines in time order, stamped by `format_logfmt`."""
        builders: dict[int, LogBuilder] = {}
        for line in sorted(self.lines):
            log = builders.setdefault(line.worker, LogBuilder())
            log.t = FLEET_EPOCH + line.t
            log.emit(line.event, line.level, **line.fields)
        return {worker: log.text() for worker, log in sorted(builders.items())}


def _trace(n: int) -> str:
    return f"{0x5EED0000 + n:08x}{n:024x}"


def _sid(n: int) -> str:
    return f"chatcmpl-{n:024x}"


def healthy_two_workers() -> Fleet:
    """Session s1 hops between workers: A on w1, then B on w2 supersedes it through the
    shared registry (A cancelled and cleaned up in w1, B's wait ends cleanly in w2),
    then C back on w1 after B completed; s2 and s3 stream beside them. Healthy."""
    fleet = Fleet()
    fleet.server_start(0.0, 1, 4101)
    fleet.server_start(0.004, 2, 4102)
    fleet.end(fleet.stream(0.10, 1, 2, "s2", 6), 1, 2, "s2")
    fleet.end(fleet.stream(0.12, 2, 3, "s3", 7), 2, 3, "s3")
    b_starts = fleet.stream(0.15, 1, 1, "s1", 3, keep_pending=True) + 0.03  # A
    after_b = fleet.stream(b_starts, 2, 4, "s1", 4, generation=2, wait_for=1)  # B
    fleet.superseded(b_starts + 0.0012, 1, 1, "s1")  # A, told by the registry
    after_b = fleet.end(after_b, 2, 4, "s1")
    fleet.end(fleet.stream(after_b + 0.2, 1, 5, "s1", 3, generation=3), 1, 5, "s1")  # C
    fleet.loop_lag(1.5, 1, 0)
    fleet.loop_lag(1.5004, 2, 0)
    return fleet


def split_brain_two_workers() -> Fleet:
    """Two hosts, each running `jarvis serve` with its registry in memory: a prompt of
    session s1 reaches each, and both streams run at once, neither cancelled."""
    fleet = Fleet(frozenset({"concurrent_streams"}))
    fleet.server_start(0.0, 1, 4101, registry="memory", host="10.0.0.11")
    fleet.server_start(0.004, 2, 5101, registry="memory", host="10.0.0.12")
    fleet.end(fleet.stream(0.10, 2, 3, "s3", 5), 2, 3, "s3")
    fleet.end(fleet.stream(0.15, 1, 1, "s1", 6), 1, 1, "s1")  # A
    fleet.end(fleet.stream(0.33, 2, 2, "s1", 5), 2, 2, "s1")  # B, while A streams
    fleet.loop_lag(1.5, 1, 0)
    fleet.loop_lag(1.5004, 2, 0)
    return fleet


def registry_outage_two_workers() -> Fleet:
    """Redis goes away for about 2.7 s: both workers log registry_unavailable (the
    listener, the lease heartbeat, a release), refuse new prompts with 503, and log
    registry_recovered with how long they saw it down. The stream in flight finishes."""
    fleet = Fleet(frozenset({"registry_unavailable"}))
    fleet.server_start(0.0, 1, 4101)
    fleet.server_start(0.004, 2, 4102)
    refused = "the stream registry is unavailable; retry shortly"
    down = "ConnectionError: Error 111 connecting to 10.0.0.9:6379. Connection refused."
    after_a = fleet.stream(0.10, 1, 1, "s1", 8)  # A runs through the outage
    fleet.log(0.50, 1, "registry_unavailable", "error", op="listen", session="", message=down)
    fleet.log(0.5011, 2, "registry_unavailable", "error", op="listen", session="", message=down)
    fleet.log(1.21, 2, "request_rejected", "warning", trace=_trace(7), session="s7", status=503,
              code="registry_unavailable", message=refused)  # fmt: skip
    fleet.log(1.77, 1, "registry_unavailable", "error", op="renew", session="", message=down)
    fleet.end(after_a, 1, 1, "s1")
    fleet.log(after_a + 0.0012, 1, "registry_unavailable", "error", op="release", session="s1",
              message=down)  # fmt: skip
    fleet.log(2.40, 2, "request_rejected", "warning", trace=_trace(8), session="s8", status=503,
              code="registry_unavailable", message=refused)  # fmt: skip
    fleet.log(3.2003, 1, "registry_recovered", "warning", down_ms=2700)
    fleet.log(3.2009, 2, "registry_recovered", "warning", down_ms=2699)
    fleet.end(fleet.stream(3.45, 2, 9, "s7", 3), 2, 9, "s7")
    fleet.loop_lag(4.0, 1, 0)
    fleet.loop_lag(4.0004, 2, 0)
    return fleet


#: Every fleet scenario, by the name of its folder under tests/logs/fleet/.
SCENARIOS: dict[str, Callable[[], Fleet]] = {
    "healthy_two_workers": healthy_two_workers,
    "split_brain_two_workers": split_brain_two_workers,
    "registry_outage_two_workers": registry_outage_two_workers,
}


def write_fleet_fixtures(root: Path) -> list[Path]:
    """Write every scenario's worker files and expected.json under `root`."""
    written = []
    for name, build in SCENARIOS.items():
        fleet = build()
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for worker, text in fleet.render().items():
            path = folder / f"system.w{worker}.log"
            path.write_text(text, encoding="utf-8")
            written.append(path)
        expected = {"findings": sorted(fleet.findings), "exit": 1 if fleet.findings else 0}
        path = folder / "expected.json"
        path.write_text(json.dumps(expected, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


# -- one file, as before the merge ---------------------------------------------------
#
# What `jarvis diagnose` says of single inputs (one file, or one rotated set) may not
# change with the merge: BASELINE holds, for each log below, the exit code, the finding
# counts and a digest of every finding (message, session, trace, evidence lines) as
# the code before the merge computed them (commit 179d115, `--baseline`). Regenerate
# it only for a deliberate change of single-file verdicts, and say so. The digests were
# re-taken once since, for a wording change of two remedies (flush_stuck,
# cancel_timeouts), after checking that the old wording still gave the stored ones.

BASELINE = FLEET / "single_file_baseline.json"


def single_file_cases() -> dict[str, dict[str, bytes]]:
    """Single inputs by name: file name -> bytes (several names: one rotated set)."""
    rotated = random_log(random.Random(5), steps=3000).text().encode()
    cut = rotated.index(b"\n", len(rotated) // 2) + 1
    cases = {
        f"random_{seed}": {"system.log": random_log(random.Random(seed), 3000).text().encode()}
        for seed in range(3)
    }
    rng = random.Random(7)
    cases["garbled"] = {"system.log": garble(random_log(rng, 2000).text().encode(), rng)}
    cases["json"] = {"system.log": random_log(random.Random(4), 1500).json_text().encode()}
    cases["healthy_supersede"] = {"system.log": healthy_supersede().text().encode()}
    cases["bare_supersede_annotated"] = {"system.log": BARE_SUPERSEDE_ANNOTATED.encode()}
    cases["bare_supersede_timestamped"] = {"system.log": BARE_SUPERSEDE_TIMESTAMPED.encode()}
    cases["rotated_set"] = {
        "system.log.2.gz": gzip.compress(rotated[: cut // 2], mtime=0),
        "system.log.1": rotated[cut // 2 : cut],
        "system.log": rotated[cut:],
    }
    return cases


#: Finding ids newer than the single-file baseline (warnings only: no exit code moves).
LATER_FINDINGS = frozenset({"streams_open", "slow_cancels"})


def single_file_outcome(folder: Path, engine: str | None = None) -> dict[str, object]:
    """Diagnose `folder/system.log` (and its rotated set) as the command does; return
    the exit code, finding counts and a digest of the findings."""
    from jarvis_cli.diagnose.report import build_report
    from jarvis_cli.logs.run import analyze

    analyzer, sources = analyze([str(folder / "system.log")], engine=engine)
    try:
        report = build_report(analyzer)
        sources.resolve_findings(report.findings)
    finally:
        sources.close()
    # Warnings added after the baseline was taken (open streams, slow cancels) are
    # left out: the baseline proves that the merge changed nothing it judged.
    findings = [f.to_json() for f in report.findings if f.id.value not in LATER_FINDINGS]
    for finding in findings:
        for evidence in finding["evidence"]:  # type: ignore[attr-defined]
            evidence["file"] = Path(evidence["file"]).name
    counts: dict[str, int] = {}
    for finding in findings:
        counts[str(finding["id"])] = counts.get(str(finding["id"]), 0) + 1
    canonical = json.dumps(
        [findings, {k.value: v for k, v in analyzer.suppressed.items()}], sort_keys=True
    )
    return {
        "exit": int(report.exit_code()),
        "findings": dict(sorted(counts.items())),
        "sha256": hashlib.sha256(canonical.encode()).hexdigest(),
    }


def write_baseline(scratch: Path) -> None:
    """Compute BASELINE with whatever `jarvis_cli` is importable (the code before the merge)."""
    outcomes = {}
    for name, files in single_file_cases().items():
        folder = scratch / name
        folder.mkdir(parents=True, exist_ok=True)
        for file, data in files.items():
            (folder / file).write_bytes(data)
        outcomes[name] = single_file_outcome(folder)
    BASELINE.write_text(json.dumps(outcomes, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--baseline"]:
        write_baseline(Path(sys.argv[2]))
    else:
        write_fleet_fixtures(FLEET)
