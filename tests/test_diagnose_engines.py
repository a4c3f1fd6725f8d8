"""The two logfmt hot loops, C (`_hotscan.c`) and Python (the reference), agree on
everything: events dispatched, state left behind, stats, coverage and findings."""

from __future__ import annotations

import gc
import json
import random
import shutil
import sys
import sysconfig
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from jarvis_cli.logs import scan
from jarvis_cli.logs.analysis import Analyzer
from jarvis_cli.logs.engine import C_FEED_LOGFMT, ENGINES, PURE_ENV, default_engine
from jarvis_cli.logs.flushes import FlushState, feed_logfmt_python
from jarvis_cli.logs.patterns import EVENT_NAMES, line_ts
from jarvis_cli.logs.run import analyze
from jarvis_cli.logs.scan import TIMED, Scanner, parse_fields
from jarvis_cli.logs.streams import Handler, StreamRecord

from . import cli
from .logfixtures import TRICKY_FLUSH_LINES, TRICKY_LINES, garble, healthy_supersede, random_log

needs_c = pytest.mark.skipif("c" not in ENGINES, reason="the C engine is not built here")


def test_extension_is_built_wherever_a_c_compiler_is() -> None:
    """setup.py marks the extension optional, so a compile error would pass silently and
    leave diagnose at half speed: with a compiler and Python.h present, it must be built."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    header = Path(sysconfig.get_paths()["include"], "Python.h")
    if shutil.which(compiler) is None or not header.exists():
        pytest.skip("no C compiler or Python headers: the Python engine is expected")
    assert ENGINES == ("c", "python")


@needs_c
def test_c_engine_is_the_default_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing set: the analyzer runs the C loop, and says so in its coverage."""
    monkeypatch.delenv(PURE_ENV, raising=False)
    assert default_engine() == "c"
    analyzer = Analyzer()
    assert analyzer.engine == "c"
    assert analyzer.coverage.to_json()["engine"] == "c"


def test_pure_env_forces_the_python_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """JARVIS_DIAGNOSE_PURE=1 selects the reference loop; 0 or empty leave the default."""
    monkeypatch.setenv(PURE_ENV, "1")
    assert Analyzer().engine == "python"
    monkeypatch.setenv(PURE_ENV, "0")
    assert Analyzer().engine == ENGINES[0]


def test_unknown_engine_is_refused() -> None:
    """Asking for an engine this install lacks is an error, never a silent fallback."""
    with pytest.raises(ValueError, match="no 'fortran' engine"):
        Analyzer(engine="fortran")


@needs_c
def test_json_report_names_the_engine_that_ran(tmp_path: Path) -> None:
    """`jarvis diagnose --json`: coverage.engine is "c", or "python" under the variable."""
    path = tmp_path / "system.log"
    path.write_text(healthy_supersede().text())
    for pure, engine in (("0", "c"), ("1", "python")):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(PURE_ENV, pure)
            proc = cli.run("diagnose", str(path), "--json")
        assert json.loads(proc.stdout)["coverage"]["engine"] == engine


class Recorder(Analyzer):
    """An analyzer that also records every call the hot loop makes into it: its flush
    state's two hooks, and (`recording_handlers`) the handlers."""

    def __init__(self, engine: str) -> None:
        super().__init__(engine=engine)
        self.calls: list[tuple[object, ...]] = []
        self.flush.on_first_emit = self.recording("first_emit", self.flush.on_first_emit)
        self.flush.on_flush_after_cancel = self.recording(
            "after_cancel_flush", self.flush.on_flush_after_cancel
        )

    def recording(
        self, name: str, hook: Callable[[bytes, int], None]
    ) -> Callable[[bytes, int], None]:
        def record(rid: bytes, ref: int) -> None:
            self.calls.append((name, rid, ref))
            hook(rid, ref)

        return record

    def recording_handlers(self) -> dict[bytes, Handler]:
        def wrap(name: str, handler: Handler) -> Handler:
            def record(fields: dict[str, str], ref: int, ts: float | None) -> None:
                self.calls.append((name, fields, ref, ts))
                handler(fields, ref, ts)

            return record

        return {name.encode(): wrap(name, h) for name, h in self.handlers.items()}

    def state(self) -> dict[str, object]:
        return {
            "calls": self.calls,
            "pending_start": self.flush.pending_start,
            "pending_sched": self.flush.pending_sched,
            "emitted": self.flush.emitted,
            "watch": sorted(self.flush.cancelled),
            "stats": self.stats.to_json(),
            "findings": [(f.id, f.message, f.refs, f.session, f.trace) for f in self.findings],
            "open": sorted(record.trace for record in self.open_streams),
        }


def feed_both(chunks: list[bytes], base: int) -> dict[str, tuple[list[object], object]]:
    """Feed the same chunks to both engines; what each returned and the state it left."""
    results: dict[str, tuple[list[object], object]] = {}
    for engine in ENGINES:
        analyzer = Recorder(engine)
        handlers = analyzer.recording_handlers()
        returned: list[object] = []
        at = base
        for chunk in chunks:
            returned.append(analyzer.feed_logfmt(chunk, at, handlers, TIMED, parse_fields))
            at += len(chunk)
        results[engine] = (returned, analyzer.state())
    return results


@needs_c
def test_the_c_loop_runs_on_a_bare_flush_state_as_python_does() -> None:
    """The C loop's whole contract is a `FlushState`: given one alone (no analyzer; its
    slots refuse any undeclared attribute), it leaves the same dicts, set and counters
    and calls the same hooks as the Python loop."""
    assert C_FEED_LOGFMT is not None
    tail = b"event=flush_start request_id=r1\n"  # r1 is cancelled: a hook is told
    data = garble(random_log(random.Random(11), steps=600).text().encode(), random.Random(11))
    data += random_log(random.Random(12), steps=300, one_line=True).text().encode()
    data += b"event=flush trace=r1 tokens=2\n"
    data += tail
    cancelled = StreamRecord("x", "r1", None)

    def read(engine: str) -> tuple[object, ...]:
        calls: list[tuple[str, bytes, int]] = []
        state = FlushState(cancelled={b"r1": cancelled})
        state.on_first_emit = lambda rid, ref: calls.append(("emit", rid, ref))
        state.on_flush_after_cancel = lambda rid, ref: calls.append(("cancel", rid, ref))
        if engine == "c":
            counts = C_FEED_LOGFMT(state, data, 5, {}, TIMED, parse_fields, EVENT_NAMES, line_ts)
        else:
            counts = feed_logfmt_python(state, data, 5, {}, TIMED, parse_fields)
        return (
            counts,
            calls,
            (state.pending_start, state.pending_sched, state.emitted, state.cancelled),
            (state.flushes, state.tokens, state.multi_token_flushes, state.scheduled),
        )

    c, python = read("c"), read("python")
    assert ("cancel", b"r1", 5 + len(data) - len(tail)) in python[1]  # type: ignore[operator]
    one_line = 5 + len(data) - len(tail) - len(b"event=flush trace=r1 tokens=2\n")
    assert ("cancel", b"r1", one_line) in python[1]  # type: ignore[operator]
    assert c == python


@needs_c
@pytest.mark.parametrize(
    "line", TRICKY_LINES + TRICKY_FLUSH_LINES, ids=range(len(TRICKY_LINES + TRICKY_FLUSH_LINES))
)
def test_each_tricky_line_is_read_alike(line: bytes) -> None:
    """Each edge of the matcher (cut names, word boundaries, `event=` inside values, token
    counts past 64 bits, leading zeros): same events, state and counts in both engines,
    at the end of a line and at the very end of the buffer."""
    before = b"ts=2026-01-26T10:00:00Z event=stream_start trace=t1 session=s stream_id=r1\n"
    after = b"event=flush_start request_id=r1\nevent=flush_done request_id=r1 tokens_sent=2\n"
    for chunk in (before + line + b"\n" + after, before + line):
        results = feed_both([chunk], 0)
        assert results["c"] == results["python"]


@needs_c
def test_event_is_found_at_every_offset_of_short_buffers() -> None:
    """The C search reads 16 bytes at a time and the rest bytewise: `event=` after near
    misses, at each offset of buffers of every length up to 64, whole or cut, is found
    alike."""
    for length in range(65):
        for offset in range(length + 1):
            filler = (b"e=ev=evenT=eventevenx=" * 3)[:offset]  # near misses
            data = filler + b"event=loop_lag max_lag_ms=5\nevent=x"
            results = feed_both([data[:length]], 0)
            assert results["c"] == results["python"], (length, offset)


@needs_c
@pytest.mark.parametrize("one_line", [False, True], ids=["three_lines", "one_line"])
@pytest.mark.parametrize("base", [0, 7 << 40, 1 << 70], ids=["zero", "source7", "bignum"])
@pytest.mark.parametrize("seed", range(4))
def test_garbled_random_logs_are_read_alike(seed: int, base: int, one_line: bool) -> None:
    """Random healthy and faulty streams (flushes in an older server's three lines, or
    today's one), then cut lines, noise, tricky and huge lines: both engines make the
    same calls in the same order and leave the same state, chunk by chunk."""
    rng = random.Random(seed)
    data = garble(random_log(rng, steps=1500, one_line=one_line).text().encode(), rng)
    cuts = sorted(rng.sample(range(1, len(data)), 6))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    results = feed_both(chunks, base)
    assert results["c"][1]["calls"], "the log should drive the handlers"  # type: ignore[index]
    assert results["c"] == results["python"]


@needs_c
def test_any_buffer_is_accepted_and_read_alike() -> None:
    """A bytearray chunk (the buffer protocol) reads as its bytes do, in both engines."""
    data = random_log(random.Random(9), steps=300).text().encode()
    assert feed_both([bytearray(data)], 0)["c"] == feed_both([data], 0)["python"]


@needs_c
@pytest.mark.parametrize(("seed", "one_line"), [(0, False), (1, False), (2, True), (3, True)])
def test_whole_runs_give_identical_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, one_line: bool
) -> None:
    """analyze() end to end, with chunks small enough to split often: same findings (ids,
    messages, refs), stats and coverage from both engines on a garbled multi-MB log, of
    three-line flushes or one-line ones."""
    rng = random.Random(100 + seed)
    path = tmp_path / "system.log"
    path.write_bytes(garble(random_log(rng, 20000, one_line=one_line).text().encode(), rng))
    assert path.stat().st_size > 1_000_000
    monkeypatch.setattr(scan, "CHUNK", 1 << 16)
    reports = {}
    for engine in ENGINES:
        analyzer, sources = analyze([str(path)], engine=engine)
        sources.close()
        coverage = analyzer.coverage.to_json()
        del coverage["seconds"], coverage["engine"]
        reports[engine] = (
            coverage,
            analyzer.stats.to_json(),
            [f.to_json() for f in analyzer.findings],
            dict(analyzer.suppressed),
        )
    assert reports["c"][0]["lifecycle_events"] > (20_000 if one_line else 30_000)  # type: ignore[index]
    assert reports["c"][2], "a garbled faulty log should yield findings"
    assert reports["c"] == reports["python"]


@needs_c
def test_errors_in_callbacks_propagate_and_leak_nothing() -> None:
    """A handler that raises stops the C loop with that exception, as in Python; repeated
    runs keep neither memory nor references to what they were handed."""
    data = garble(random_log(random.Random(3), steps=400).text().encode(), random.Random(3))

    def boom(fields: dict[str, str], ref: int, ts: float | None) -> None:
        raise RuntimeError(ref)

    def run() -> None:
        analyzer = Analyzer(engine="c")
        handlers = {k.encode(): v for k, v in analyzer.handlers.items()}
        analyzer.feed_logfmt(data, 1 << 41, handlers, TIMED, parse_fields)
        analyzer.feed_logfmt(data, 1 << 70, handlers, TIMED, parse_fields)
        with pytest.raises(RuntimeError):
            analyzer.feed_logfmt(data, 0, {b"stream_start": boom}, TIMED, parse_fields)

    for _ in range(3):
        run()
    gc.collect()
    held = [sys.getrefcount(x) for x in (data, boom, parse_fields, TIMED, line_ts, EVENT_NAMES)]
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            run()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    # One object leaked per flush event would be over a megabyte by now.
    assert grown < 256 * 1024, f"{grown} bytes kept after 20 runs"
    assert [
        sys.getrefcount(x) for x in (data, boom, parse_fields, TIMED, line_ts, EVENT_NAMES)
    ] == held


@needs_c
def test_scanner_counts_coverage_from_the_engine(tmp_path: Path) -> None:
    """Coverage comes from the engine's two counts: `event=` occurrences the regex skips
    (inside a request id) are still unrecognised events."""
    text = b"event=flush_start request_id=aevent=b\nevent=http_request\nevent=stream_x=1\n"
    for engine in ENGINES:
        analyzer = Analyzer(engine=engine)
        Scanner(analyzer).scan_chunk(_Source(text), "logfmt", text, 0)  # type: ignore[arg-type]
        assert (analyzer.coverage.recognised, analyzer.coverage.unrecognised) == (1, 3)
    assert text.count(b"event=") == 4


class _Source:
    """Just enough of a Source for one scan_chunk call."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def ref(self, offset: int) -> int:
        return offset


@needs_c
def test_c_line_count_equals_bytes_count() -> None:
    """count_lines(buffer, start, stop) is buffer[start:stop].count(b"\\n"), for any range
    (empty, a whole buffer with or without a final newline), and refuses a range outside it."""
    from jarvis_cli.logs.engine import C_COUNT_LINES

    assert C_COUNT_LINES is not None
    rng = random.Random(5)
    for _ in range(300):
        data = bytes(rng.choice(b"ab\n\x00") for _ in range(rng.randrange(200)))
        start = rng.randrange(len(data) + 1)
        stop = rng.randrange(start, len(data) + 1)
        assert C_COUNT_LINES(data, start, stop) == data.count(b"\n", start, stop)
    for start, stop in ((-1, 2), (2, 1), (0, 4)):
        with pytest.raises(ValueError, match="start <= stop"):
            C_COUNT_LINES(b"a\nb", start, stop)


@pytest.mark.parametrize("engine", ENGINES)
def test_an_absurd_token_count_is_read_as_zero_not_a_crash(engine: str) -> None:
    """`int()` refuses 4,301 digits with a ValueError: a hostile log must not end diagnose.
    A count longer than 18 digits is unreadable: it adds nothing, the flush still counts."""
    analyzer = Analyzer(engine=engine)
    chunk = (
        b"event=flush_start request_id=r1\n"
        b"event=flush_done request_id=r1 tokens_sent=" + b"9" * 5000 + b"\n"
        b"event=flush_done request_id=r1 tokens_sent=" + b"9" * 19 + b"\n"
        b"event=flush_done request_id=r1 tokens_sent=7\n"
    )
    analyzer.feed_logfmt(chunk, 0, {}, TIMED, parse_fields)
    assert analyzer.stats.flushes == 3
    assert analyzer.stats.tokens == 7
    assert analyzer.stats.multi_token_flushes == 1
