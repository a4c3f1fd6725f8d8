"""The log vocabulary through stdlib `logging`: the `jarvis.stream` logger, and the
formatters that write its records as `jarvis serve` does (`LogfmtFormatter`,
`JsonFormatter`).

A library must log where its user's logging config sends things, so a guard
without `log=` emits every event as a record of the `jarvis.stream` logger.
The message is logfmt (`event=stream_start trace=... session=...`), which
`jarvis diagnose` reads under any common format, JSON ones included; the two
formatters write the event and its fields as fields of the line instead.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping

from .logfmt import bound_fields, format_json, format_logfmt, format_value
from .vocabulary import EVENTS, Event

#: The logger a guard writes to when it is given no `log=`.
LOGGER_NAME = "jarvis.stream"
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_HEADS = {event: (_LEVELS[spec.level], event.value) for event, spec in EVENTS.items()}


class _Message:
    """The record's message, rendered only if a handler takes the record."""

    __slots__ = ("event", "fields")

    def __init__(self, event: str, fields: Mapping[str, object]) -> None:
        self.event = event
        self.fields = fields

    def __str__(self) -> str:
        fv = format_value
        return " ".join(
            ["event=" + self.event, *(f"{key}={fv(value)}" for key, value in self.fields.items())]
        )


class LoggerSink:
    """Emits vocabulary events as records of a stdlib logger.

    The record carries the event and its fields as `record.jarvis_event` and
    `record.jarvis_fields`, so a formatter can write them as structured data; the
    fields are bounded already (`jarvis.logfmt.bound`), as in the message.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def __repr__(self) -> str:
        return f"<LoggerSink {self.logger.name!r}>"

    def emit(self, event: Event, /, **fields: object) -> None:
        level, name = _HEADS[event]
        if self.logger.isEnabledFor(level):
            fields = bound_fields(fields)  # type: ignore[assignment]
            self.logger.log(
                level,
                "%s",
                _Message(name, fields),
                extra={"jarvis_event": name, "jarvis_fields": fields},
            )

    def bind(self, event: Event, /, **fixed: object) -> Callable[..., None]:
        rest = EVENTS[event].fields[len(fixed) :]

        def emit(*values: object) -> None:
            self.emit(event, **fixed, **dict(zip(rest, values, strict=True)))

        return emit


def _timestamp(created: float) -> str:
    second = int(created)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return "%s.%06dZ" % (stamp, (created - second) * 1_000_000)  # noqa: UP031 - as the sink


class LogfmtFormatter(logging.Formatter):
    """Formats records as logfmt lines, the format `jarvis serve` writes and `diagnose` reads.

    A record of the guard becomes `ts=... level=... event=... <fields>`, byte
    for byte what `jarvis serve` writes. Any other record becomes
    `ts=... level=... logger=... msg="..."` (plus `exc="..."`), escaped the
    same way, so a client value in a message cannot split or forge a line.
    """

    def format(self, record: logging.LogRecord) -> str:
        ts = _timestamp(record.created)
        level = record.levelname.lower()
        event = getattr(record, "jarvis_event", None)
        fields = getattr(record, "jarvis_fields", None)
        if isinstance(event, str) and isinstance(fields, Mapping):
            return format_logfmt(ts, level, event, fields, bounded=True)  # by LoggerSink
        line = (
            f"ts={ts} level={level} logger={format_value(record.name)} "
            f"msg={format_value(record.getMessage())}"
        )
        if record.exc_info:
            line += " exc=" + format_value(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """Formats records as JSON lines, one object a line: what `jarvis serve --log-format
    json` writes, and `diagnose` reads.

    A record of the guard becomes `{"ts": …, "level": …, "event": …, <fields>}`, byte
    for byte what `jarvis serve --log-format json` writes. Any other record becomes
    `{"ts": …, "level": …, "logger": …, "msg": …}` (plus `"exc"`). Every non-ASCII
    character is escaped, so a line is one line whatever a client sent.
    """

    def format(self, record: logging.LogRecord) -> str:
        ts = _timestamp(record.created)
        level = record.levelname.lower()
        event = getattr(record, "jarvis_event", None)
        fields = getattr(record, "jarvis_fields", None)
        if isinstance(event, str) and isinstance(fields, Mapping):
            return format_json(ts, level, event, fields)
        line: dict[str, object] = {
            "ts": ts,
            "level": level,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True, separators=(",", ":"), default=str)
