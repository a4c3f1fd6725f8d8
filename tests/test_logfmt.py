"""Every value a log line holds is bounded: cut past its field's limit, with a mark that
says the original length, the same in logfmt, JSON and through stdlib logging."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from jarvis import BadRequest, LogfmtFormatter, StreamGuard
from jarvis._stdlog import LoggerSink
from jarvis.eventlog import EventLog
from jarvis.logfmt import bound, bound_fields, format_json, format_logfmt, parse_logfmt
from jarvis.vocabulary import FIELD_LIMITS, VALUE_LIMIT, Event, cut_length, value_limit

HOSTILE = "s" * 8192
CUT = "s" * VALUE_LIMIT + "\u2026[8192 chars]"


def test_a_long_value_keeps_its_fields_bound_and_says_its_original_length() -> None:
    """Past 256 characters (more for `message`, `prev_trace`, `stack`) a value is its
    first `value_limit` characters and `…[N chars]`; anything shorter is untouched."""
    assert bound("session", HOSTILE) == CUT
    assert bound("session", "s" * VALUE_LIMIT) == "s" * VALUE_LIMIT
    assert bound("message", "m" * 1000) == "m" * 1000
    assert bound("message", "m" * 5000) == "m" * FIELD_LIMITS["message"] + "\u2026[5000 chars]"
    assert bound("status", 400) == 400 and bound("x", None) is None and bound("x", True) is True
    assert bound("error", ValueError("e" * 300)) == "e" * VALUE_LIMIT + "\u2026[300 chars]"
    fields = {"trace": "t", "session": "ok"}
    assert bound_fields(fields) is fields  # nothing to cut: no copy on the hot path


def test_a_cut_is_read_back_and_cannot_be_forged_by_a_short_value() -> None:
    """`cut_length` finds the original length of a cut value; a client value that ends in
    the mark but is short enough to be whole is not a cut (its kept part is too short)."""
    assert cut_length("session", CUT) == 8192
    forged = "x\u2026[9999 chars]"
    assert bound("session", forged) == forged
    assert cut_length("session", forged) is None
    assert cut_length("session", "plain") is None
    long_forgery = "y" * 300 + "\u2026[5 chars]"
    assert cut_length("session", str(bound("session", long_forgery))) == len(long_forgery)
    assert value_limit("stack") == FIELD_LIMITS["stack"]


def test_logfmt_and_json_lines_hold_the_cut_value_and_parse_back_to_it() -> None:
    """Both formats write the same cut value: logfmt quotes it (the mark is not a bare
    character), JSON escapes the `…`; each parses back to the cut value, the fields after
    it intact."""
    fields = {"trace": "t1", "session": HOSTILE, "status": 400}
    line = format_logfmt("ts0", "warning", "request_rejected", fields)
    assert len(line) < 400
    parsed = parse_logfmt(line)
    assert (parsed["session"], parsed["status"]) == (CUT, "400")
    record = json.loads(format_json("ts0", "warning", "request_rejected", fields))
    assert (record["session"], record["status"]) == (CUT, 400)


async def test_an_8kb_session_id_is_logged_bounded_with_its_length_in_file_and_logger(
    tmp_path: Path,
) -> None:
    """The user's case: an 8 KB hostile session id is refused, and its `request_rejected`
    line, in a log file (logfmt, JSON) and through stdlib logging, holds 256 characters of
    it and says it was 8192 long."""
    for fmt in ("logfmt", "json"):
        path = tmp_path / f"guard.{fmt}.log"
        guard = StreamGuard(log=str(path), log_format=fmt)  # type: ignore[arg-type]
        guard.reject(BadRequest("bad id", code="invalid_session_id"), session=HOSTILE)
        guard.close()
        (line,) = path.read_text().splitlines()
        assert len(line) < 600, len(line)
        session = parse_logfmt(line)["session"] if fmt == "logfmt" else json.loads(line)["session"]
        assert cut_length("session", session) == 8192

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogfmtFormatter())
    logger = logging.getLogger("test.bounded")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        records: list[logging.LogRecord] = []
        logger.addFilter(lambda record: records.append(record) or True)  # type: ignore[func-returns-value]
        LoggerSink(logger).emit(
            Event.REQUEST_REJECTED, trace="t", session=HOSTILE, status=400, code="c", message="m"
        )
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    # Cut once, not twice: the formatter writes the sink's bounded fields as they are.
    assert parse_logfmt(line)["session"] == CUT
    assert records[0].jarvis_fields["session"] == CUT  # type: ignore[attr-defined]
    assert f"session={json.dumps(CUT, ensure_ascii=False)}" in records[0].getMessage()


def test_a_bound_line_cuts_its_fixed_fields_as_emit_does(tmp_path: Path) -> None:
    """`EventLog.bind` renders its fixed fields once, cut the same way as `emit`."""
    path = tmp_path / "x.log"
    log = EventLog(path, wall_clock=lambda: 1795317987.25)
    log.emit(Event.FLUSH_DONE, request_id=HOSTILE, tokens_sent=3, size=17)
    log.bind(Event.FLUSH_DONE, request_id=HOSTILE)(3, 17)
    log.close()
    first, second = path.read_text().splitlines()
    assert first == second
    assert parse_logfmt(first)["request_id"] == CUT
