"""One run of a real guard, logged at once in every format a user's server may use, and
read by verify-hang's reader and by diagnose: both must see the same streams, the same
ends and the same cleanup, in each format.

The guard logs through the `jarvis.stream` logger (no `log=`), as a library user's app
does; each format is a real formatter (stdlib's with a framework's own format string,
uvicorn's, gunicorn's logging config, python-json-logger, ecs-logging, loguru through
its documented intercept handler, structlog's `ProcessorFormatter`) writing its own
file from the same records. Only the journald prefix is ours: `journalctl -o short`'s
`Mon DD HH:MM:SS host ident[pid]: ` before the line the app printed, as the journal
shows it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import jarvis
from jarvis_cli.diagnose.report import build_report
from jarvis_cli.logs.run import analyze
from jarvis_cli.logs.streams import StreamRecord
from jarvis_cli.verify import serverlog

#: The run's streams: (trace, session). a1 is superseded by b1; e1's client leaves; d1
#: is still open when the logs are read.
STREAMS = {("a1", "s1"), ("b1", "s1"), ("c1", "s2"), ("d1", "s3"), ("e1", "s4")}
ENDED = {"a1": "superseded", "b1": "completed", "c1": "completed", "e1": "disconnected"}


def _journald(fmt: str) -> logging.Formatter:
    """What `journalctl -o short` shows of a line the app printed with `fmt`."""

    class Journald(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            stamp = time.strftime("%b %d %H:%M:%S", time.localtime(record.created))
            return f"{stamp} host app[{record.process}]: {super().format(record)}"

    return Journald(fmt)


def _structlog(renderer: str, *, glue: bool) -> logging.Formatter:
    import structlog

    chain: list[Callable[..., object]] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    if glue:
        chain.append(jarvis.structlog_fields)
    last: Callable[..., object] = (
        structlog.processors.JSONRenderer()
        if renderer == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=chain,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, last],
    )


def _python_json_logger(**options: object) -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", **options)  # type: ignore[arg-type]


def _uvicorn() -> logging.Formatter:
    from uvicorn.logging import DefaultFormatter

    return DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False)


def _gunicorn() -> logging.Formatter:
    from gunicorn.glogging import CONFIG_DEFAULTS

    generic = CONFIG_DEFAULTS["formatters"]["generic"]
    return logging.Formatter(generic["format"], datefmt=generic["datefmt"])


def _ecs() -> logging.Formatter:
    import ecs_logging

    return ecs_logging.StdlibFormatter()


#: Every format, by name: a stdlib formatter for the `jarvis.stream` records (loguru,
#: which is no formatter, is set up apart).
FORMATTERS: dict[str, Callable[[], logging.Formatter]] = {
    # The library's own: LogfmtFormatter on the jarvis.stream logger.
    "jarvis_logfmt": jarvis.LogfmtFormatter,
    "uvicorn": _uvicorn,
    "gunicorn": _gunicorn,
    # Django's documented `verbose` formatter (its DEFAULT_LOGGING formats no app logger).
    "django": lambda: logging.Formatter(
        "{levelname} {asctime} {module} {process:d} {thread:d} {message}", style="{"
    ),
    "stdlib_bracketed": lambda: logging.Formatter(
        "[%(asctime)s] %(levelname)s %(name)s - %(message)s"
    ),
    "journald": lambda: _journald("%(levelname)s %(name)s: %(message)s"),
    "python_json_logger": _python_json_logger,
    # Google Cloud Logging's structured JSON: `severity`, `message`, `time` at the top.
    "gcp_json": lambda: _python_json_logger(
        rename_fields={"levelname": "severity", "asctime": "time"},
        static_fields={"logging.googleapis.com/labels": {"app": "chat"}},
    ),
    "ecs_json": _ecs,
    "structlog_json": lambda: _structlog("json", glue=False),
    "structlog_console": lambda: _structlog("console", glue=False),
    # With jarvis's glue: the event and its fields as fields of the line.
    "jarvis_json": jarvis.JsonFormatter,
    "structlog_json_fields": lambda: _structlog("json", glue=True),
    "structlog_console_fields": lambda: _structlog("console", glue=True),
}
FORMATS = [*FORMATTERS, "loguru"]


class _InterceptHandler(logging.Handler):
    """loguru's documented handler that sends stdlib records to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        from loguru import logger

        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = inspect.currentframe(), 0
        while frame is not None and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame = frame.f_back
            depth += 1
        logger.bind(fixture=True).opt(depth=depth, exception=record.exc_info).log(
            level, record.getMessage()
        )


async def _run(guard: jarvis.StreamGuard, while_open: Callable[[], None]) -> None:
    """A supersede, a completed stream, a client that leaves, and one still open while
    `while_open` runs."""

    async def write(text: str) -> None:
        await asyncio.sleep(0)

    a_writing = asyncio.Event()

    async def superseded() -> None:
        async with guard.stream("s1", write, trace="a1") as s:
            while await s.send("tok "):
                a_writing.set()
                await asyncio.sleep(0.002)

    a = asyncio.create_task(superseded())
    await asyncio.wait_for(a_writing.wait(), 5)
    await asyncio.sleep(0.03)
    async with guard.stream("s1", write, trace="b1") as s:
        for _ in range(20):
            await s.send("b ")
            await asyncio.sleep(0.001)
    await asyncio.wait_for(a, 5)
    async with guard.stream("s2", write, trace="c1") as s:
        for _ in range(10):
            await s.send("c ")
    async with guard.stream("s4", write, trace="e1") as s:
        await s.send("e ")
        await asyncio.sleep(0.02)
        s.disconnect()
    release, opened = asyncio.Event(), asyncio.Event()

    async def held_open() -> None:
        async with guard.stream("s3", write, trace="d1") as s:
            await s.send("d ")
            opened.set()
            await release.wait()

    d = asyncio.create_task(held_open())
    await asyncio.wait_for(opened.wait(), 5)
    await asyncio.sleep(0.03)  # d1's first flush is written
    while_open()
    release.set()
    await asyncio.wait_for(d, 5)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One guard's run, written in every format at once; each file as it stood while d1
    was still open."""
    from loguru import logger as loguru

    folder = tmp_path_factory.mktemp("formats")
    stream_logger = logging.getLogger(jarvis.LOGGER_NAME)
    saved = (stream_logger.level, stream_logger.propagate, list(stream_logger.handlers))
    handlers: list[logging.Handler] = []
    for name, formatter in FORMATTERS.items():
        handler = logging.FileHandler(folder / f"{name}.live.log", encoding="utf-8")
        handler.setFormatter(formatter())
        handlers.append(handler)
    handlers.append(_InterceptHandler())
    sink = loguru.add(
        folder / "loguru.live.log", colorize=False, filter=lambda r: "fixture" in r["extra"]
    )
    stream_logger.handlers[:] = handlers
    stream_logger.setLevel(logging.INFO)
    stream_logger.propagate = False
    snapshots: dict[str, Path] = {}

    def snapshot() -> None:
        loguru.complete()
        for handler in handlers:
            handler.flush()
        for name in FORMATS:
            snapshots[name] = folder / f"{name}.log"
            shutil.copyfile(folder / f"{name}.live.log", snapshots[name])

    try:
        guard = jarvis.StreamGuard(flush_ms=5)
        asyncio.run(asyncio.wait_for(_run(guard, snapshot), 20))
    finally:
        loguru.remove(sink)
        for handler in handlers:
            handler.close()
        stream_logger.setLevel(saved[0])
        stream_logger.propagate = saved[1]
        stream_logger.handlers[:] = saved[2]
    return snapshots


@dataclass
class Facts:
    """What a reader says of a run: streams started, how each ended, and its cleanup."""

    started: set[tuple[str, str]] = field(default_factory=set)
    ended: dict[str, str] = field(default_factory=dict)
    cleanup_done: dict[str, str] = field(default_factory=dict)
    sessions_ended: dict[str, bool] = field(default_factory=dict)


def verify_hang_facts(path: Path) -> Facts:
    """verify-hang's reading: serverlog's lines and links, as disconnect and burst use."""
    facts = Facts()
    for text in serverlog.lines_since(path, 0):
        line = serverlog.parse(text)
        if line.event == "stream_start":
            facts.started.add((line.fields["trace"], line.fields["session"]))
        elif line.event == "stream_end":
            facts.ended[line.fields["trace"]] = line.fields["reason"]
            facts.cleanup_done[line.fields["trace"]] = line.fields["cleanup_done"]
    for _, session in STREAMS:
        facts.sessions_ended[session] = serverlog.session_ended(path, 0, session)
    return facts


def diagnose_facts(path: Path) -> tuple[Facts, list[str]]:
    """diagnose's reading (whichever loop the file's dialect gets), and its finding ids."""
    facts = Facts()
    opened: list[StreamRecord] = []
    closed: set[str] = set()

    def attach(analyzer: object) -> None:
        analyzer.on_open = opened.append  # type: ignore[attr-defined]
        analyzer.on_close = lambda record: closed.add(record.trace)  # type: ignore[attr-defined]
        handlers = analyzer.handlers  # type: ignore[attr-defined]
        theirs = handlers["stream_end"]

        def end(fields: dict[str, str], ref: int, ts: float | None) -> None:
            record = analyzer.stream_of(fields)  # type: ignore[attr-defined]
            if record is not None:
                facts.ended[record.trace] = fields.get("reason", "")
                facts.cleanup_done[record.trace] = fields.get("cleanup_done", "")
            theirs(fields, ref, ts)

        handlers["stream_end"] = end

    analyzer, sources = analyze([str(path)], attach=attach)
    try:
        report = build_report(analyzer)
    finally:
        sources.close()
    facts.started = {(r.trace, r.session or "") for r in opened}
    still_open = {r.session for r in analyzer.open_streams}
    for _, session in STREAMS:
        facts.sessions_ended[session] = session not in still_open
    assert closed == set(facts.ended)
    return facts, sorted(f.id.value for f in report.findings)


def test_every_format_is_tested() -> None:
    """The twelve formats of issue 18, and the three the glue writes."""
    assert len(FORMATS) == 15


@pytest.mark.parametrize("fmt", FORMATS)
def test_verify_hang_and_diagnose_read_the_same_run_alike(logs: dict[str, Path], fmt: str) -> None:
    """Same streams started, same ends with the same reasons, cleanup_done=True on each,
    the same session still open: both tools, every format. Diagnose finds the run
    healthy: no cleanup_incomplete, only the open stream's warning."""
    path = logs[fmt]
    seen_by_verify = verify_hang_facts(path)
    seen_by_diagnose, findings = diagnose_facts(path)
    assert seen_by_verify == seen_by_diagnose
    assert seen_by_diagnose.started == STREAMS
    assert seen_by_diagnose.ended == ENDED
    assert set(seen_by_diagnose.cleanup_done.values()) == {"True"}
    assert seen_by_diagnose.sessions_ended == {"s1": True, "s2": True, "s3": False, "s4": True}
    assert findings == ["streams_open"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_flush_lines_are_read_in_every_format(logs: dict[str, Path], fmt: str) -> None:
    """The flush lines (one a flush) reach diagnose in every format: its count of
    flushes and tokens is the library default's."""

    def flushes(path: Path) -> tuple[int, int]:
        analyzer, sources = analyze([str(path)])
        sources.close()
        return analyzer.stats.flushes, analyzer.stats.tokens

    reference = flushes(logs["jarvis_logfmt"])
    assert reference[0] > 5
    assert flushes(logs[fmt]) == reference


def _lines(path: Path) -> Iterator[str]:
    yield from path.read_text(encoding="utf-8").splitlines()


def test_the_glue_writes_events_as_fields_not_as_a_message(logs: dict[str, Path]) -> None:
    """jarvis.JsonFormatter and structlog_fields: the line's `event` is the event name and
    the fields are the line's own (cleanup_done a JSON true with structlog, "True" as
    jarvis serve writes it); without the glue the event is the logfmt message."""
    import json

    def ends(fmt: str) -> list[dict[str, object]]:
        return [json.loads(line) for line in _lines(logs[fmt]) if "stream_end" in line]

    (bare, *_) = ends("structlog_json")
    assert str(bare["event"]).startswith("event=stream_end ")
    (glued, *_) = ends("structlog_json_fields")
    assert glued["event"] == "stream_end"
    assert (glued["trace"], glued["cleanup_done"], glued["logger"]) == ("a1", True, "jarvis.stream")
    (own, *_) = ends("jarvis_json")
    assert (own["event"], own["trace"], own["cleanup_done"]) == ("stream_end", "a1", True)
    assert list(own)[:3] == ["ts", "level", "event"]
    console = next(line for line in _lines(logs["structlog_console_fields"]) if "a1" in line)
    assert " stream_start " in console and "event=" not in console


def test_json_formatter_writes_other_records_as_escaped_json() -> None:
    """A record that is not jarvis's: ts, level, logger, msg (and exc), one line whatever
    the message holds."""
    import io
    import json

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(jarvis.JsonFormatter())
    log = logging.Logger("app.chat")
    log.addHandler(handler)
    log.warning("user said %s", "hi\n\u2028there")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second = stream.getvalue().splitlines()
    record = json.loads(first)
    assert {k: record[k] for k in ("level", "logger", "msg")} == {
        "level": "warning", "logger": "app.chat", "msg": "user said hi\n\u2028there",
    }  # fmt: skip
    assert "ValueError: boom" in json.loads(second)["exc"]


def test_structlog_fields_leaves_other_events_alone() -> None:
    """An event dict without a jarvis record (structlog's own, another library's) comes
    back as it went in; importing jarvis never imports structlog."""
    event = {"event": "hello", "user": "x"}
    assert jarvis.structlog_fields(None, "info", dict(event)) == event
    record = logging.LogRecord("other", logging.INFO, "f.py", 1, "plain", (), None)
    assert jarvis.structlog_fields(None, "info", {"event": "plain", "_record": record}) == {
        "event": "plain", "_record": record,
    }  # fmt: skip
