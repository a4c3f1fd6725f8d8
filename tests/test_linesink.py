"""The log's line sinks: the C one (jarvis/_linesink.c) and its Python twin write the same bytes."""

from __future__ import annotations

import importlib.util
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from jarvis._sink import PURE_ENV, LineSink, Sink, new_sink
from jarvis.eventlog import EventLog
from jarvis.vocabulary import Event

HAVE_C = importlib.util.find_spec("jarvis._linesink") is not None
STAMP = re.compile(rb"ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z ")


def sinks() -> list[Callable[[], Sink]]:
    made: list[Callable[[], Sink]] = [LineSink]
    if HAVE_C:
        from jarvis._linesink import Sink as CSink

        made.append(CSink)
    return made


def test_the_c_sink_is_built_wherever_a_compiler_is() -> None:
    """The CPU target of the server rests on the C sink: a silent fallback is a failure."""
    source = Path(__file__).parent.parent / "jarvis" / "_linesink.c"
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler on this machine: the Python sink is the expected one")
    assert source.exists()
    assert HAVE_C, "jarvis._linesink was not built: reinstall with scripts/install"
    assert type(new_sink()).__module__ == "jarvis._linesink"


def test_new_sink_falls_back_to_python_when_asked_or_when_the_clock_is_injected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(new_sink(lambda: 0.0), LineSink)
    monkeypatch.setenv(PURE_ENV, "1")
    assert isinstance(new_sink(), LineSink)


def _lines(make: Callable[[], Sink]) -> bytes:
    sink = make()
    done = sink.bind((" level=info event=flush_done request_id=r1 tokens_sent=", " size=", ""))
    start = sink.bind((' level=info event=flush_start request_id="we ird%d" size=', ""))
    bare = sink.bind((" level=info event=cleanup_buffer request_id=r1",))
    done(3, 17)
    start(0)
    done(-1, 2**62)
    bare()
    sink.write("ts=" + sink.stamp() + " level=info event=stream_end session=caf\u00e9 bad=\udc80")
    assert len(sink) > 0
    data = sink.take()
    assert len(sink) == 0
    assert sink.take() == b""
    return data


@pytest.mark.parametrize("make", sinks(), ids=lambda m: m.__module__)
def test_lines_are_stamped_and_formatted_exactly(make: Callable[[], Sink]) -> None:
    data = _lines(make)
    lines = data.split(b"\n")
    assert lines[-1] == b""  # every line ends with a newline
    assert all(STAMP.match(line) for line in lines[:-1])
    assert [STAMP.sub(b"", line) for line in lines[:-1]] == [
        b"level=info event=flush_done request_id=r1 tokens_sent=3 size=17",
        b'level=info event=flush_start request_id="we ird%d" size=0',
        b"level=info event=flush_done request_id=r1 tokens_sent=-1 size=4611686018427387904",
        b"level=info event=cleanup_buffer request_id=r1",
        # an unencodable lone surrogate is escaped, never a lost batch
        "level=info event=stream_end session=caf\u00e9 bad=\\udc80".encode(),
    ]


@pytest.mark.skipif(not HAVE_C, reason="jarvis._linesink is not built here")
def test_the_c_sink_writes_what_the_python_sink_writes() -> None:
    from jarvis._linesink import Sink as CSink

    assert STAMP.sub(b"", _lines(CSink)) == STAMP.sub(b"", _lines(LineSink))


@pytest.mark.skipif(not HAVE_C, reason="jarvis._linesink is not built here")
def test_the_c_stamp_is_the_wall_clock_in_utc() -> None:
    from jarvis._linesink import Sink as CSink

    before = time.time()
    stamp = CSink().stamp()
    after = time.time()
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(before)))
    later = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(after)))
    assert stamp[:19] in (whole, later)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)


@pytest.mark.parametrize("make", sinks(), ids=lambda m: m.__module__)
def test_a_bad_call_raises_and_leaves_no_half_line(make: Callable[[], Sink]) -> None:
    sink = make()
    done = sink.bind((" event=flush_done tokens_sent=", " size=", ""))
    with pytest.raises(TypeError):
        done(1)
    with pytest.raises(TypeError):
        done(1, "2")
    done(1, 2)
    (line,) = sink.take().splitlines()
    assert STAMP.sub(b"", line) == b"event=flush_done tokens_sent=1 size=2"


def test_event_log_on_the_c_sink_writes_bound_and_emitted_lines_alike(tmp_path: Path) -> None:
    """The server's own path, with the real clock: bind (C) and emit agree but for the stamp."""
    path = tmp_path / "x.log"
    log = EventLog(path)
    log.emit(Event.FLUSH_DONE, request_id="chatcmpl-1", tokens_sent=3, size=17)
    log.bind(Event.FLUSH_DONE, request_id="chatcmpl-1")(3, 17)
    log.emit(Event.CLEANUP_BUFFER, request_id="we ird")
    log.bind(Event.CLEANUP_BUFFER, request_id="we ird")()
    # A value past its bound is cut before either sink sees it: the C sink formats no
    # string value, so both sinks write the same cut bytes.
    log.emit(Event.FLUSH_DONE, request_id="r" * 8192, tokens_sent=1, size=2)
    log.bind(Event.FLUSH_DONE, request_id="r" * 8192)(1, 2)
    log.close()
    lines = [STAMP.sub(b"", line) for line in path.read_bytes().splitlines()]
    assert (
        lines[0]
        == lines[1]
        == b"level=info event=flush_done request_id=chatcmpl-1 tokens_sent=3 size=17"
    )
    assert lines[2] == lines[3] == b'level=info event=cleanup_buffer request_id="we ird"'
    cut = ("r" * 256 + "\u2026[8192 chars]").encode()
    assert (
        lines[4]
        == lines[5]
        == b'level=info event=flush_done request_id="' + cut + b'" tokens_sent=1 size=2'
    )
