"""The one line reader: a log line in any dialect we know, as an event, its fields, its time.

`jarvis diagnose` and `jarvis verify-hang` (`jarvis_cli/verify/serverlog.py`) both read
lines here, so the two can never disagree on what a line says. (diagnose's hot loop
reads jarvis's own logfmt in bulk; it takes the same `event=NAME k=v` after any prefix,
its timestamps come from `line_time` when the line does not start with one, and a test
holds the two to the same facts on every format in tests/test_log_formats.py.)
Dialects, tried in this order:

- JSON objects: jarvis `--log-format json` and `jarvis.JsonFormatter`, structlog's
  JSONRenderer (`event`, `timestamp`), JSON formatters of stdlib logging
  (python-json-logger's `message`/`asctime`, ECS's `@timestamp`/`log.level`, Google
  Cloud's `severity`). A message that is itself logfmt (`{"event": "event=stream_end
  … cleanup_done=True"}`, jarvis's records through a JSON formatter) is read as such;
- logfmt: jarvis's `ts=… level=… event=…`, any line that starts with `key=`;
- `event=NAME k=v …` after any prefix: jarvis's records (`jarvis.stream`, whose message
  is logfmt) under any text format: stdlib, uvicorn, gunicorn, Django, loguru,
  structlog's console, journald's `Dec 07 00:00:00 host app[123]:`. The time is the
  prefix's (a known head, else its first ISO-8601 stamp), or the message's own `ts=`;
- text with a head: stdlib `logging` (`%(asctime)s %(levelname)s %(name)s: %(message)s`,
  `%(asctime)s - %(name)s - %(levelname)s - %(message)s`, `LEVEL:name:message`),
  loguru's default (`time | LEVEL | name:function:line - message`), uvicorn's
  `LEVEL:     message`, structlog's console renderer, a bare timestamp or level;
- the original server's bare style: `stream_start trace=abc session=s1`.

In text dialects without `event=` the event is the first word of the message and the
rest is read as logfmt (`key=value`, values bare or quoted with `"` or `'`). ANSI colour
sequences (loguru `colorize=True`, structlog's console) are dropped before anything else.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from jarvis.logfmt import parse_logfmt
from jarvis.vocabulary import Event

#: Every event name of the vocabulary: a bare line counts only if it starts with one.
VOCABULARY = frozenset(e.value for e in Event)

# Only colours (SGR, `ESC [ … m`): any other control sequence in a line (erase, cursor
# moves) is no formatter's doing, and leaves the line unreadable, as a forged one should be.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A zone may follow after a space: `%z` in a datefmt (gunicorn's `[%Y-%m-%d %H:%M:%S %z]`).
_TS = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?: ?(?:Z|[+-]\d\d:?\d\d))?"
# syslog's and journald's `short` stamp: `Dec  7 00:00:00`, no year (read as this year).
_SYSLOG_TS = r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"
_LEVEL = r"(?i:TRACE|DEBUG|INFO|SUCCESS|NOTICE|WARNING|WARN|ERROR|CRITICAL|FATAL|EXCEPTION)"
_NAME = r"[A-Za-z_<][\w.<>\-]*"
#: Text heads, most specific first: (dialect, pattern up to the message).
_HEADS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (dialect, re.compile(pattern))
    for dialect, pattern in (
        (
            "journald",
            rf"(?P<ts>{_SYSLOG_TS})\s+\S+\s+(?P<logger>[^\s\[\]:]+)(?:\[\d+\])?:\s?",
        ),
        ("loguru", rf"(?P<ts>{_TS})\s*\|\s*(?P<level>{_LEVEL})\s*\|\s*(?P<logger>\S+?)\s+-\s?"),
        (
            "stdlib",
            rf"(?P<ts>{_TS})\s+-\s+(?:(?P<logger>{_NAME})\s+-\s+)?(?P<level>{_LEVEL})\s+-\s?",
        ),
        (
            "stdlib",
            rf"(?:\[?(?P<ts>{_TS})\]?\s+)?\[?(?P<level>{_LEVEL})\]?\s+\[?(?P<logger>{_NAME})\]?:\s",
        ),
        ("stdlib", rf"(?P<level>{_LEVEL}):(?P<logger>{_NAME}):"),
        ("uvicorn", rf"(?P<level>{_LEVEL}):\s+"),
        ("plain", rf"\[?(?P<ts>{_TS})\]?\s+\[?(?P<level>{_LEVEL})\s*\]?:?\s+"),
        ("plain", rf"\[?(?P<ts>{_TS})\]?\s+"),
        ("plain", rf"\[?(?P<level>{_LEVEL})\s*\]?\s+"),
    )
)
# A key=value pair of a message; values bare, "double-" or 'single-quoted'.
_PAIR = re.compile(
    r"""(?:^|(?<=\s))([A-Za-z_][\w.\-]*)=("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\S*)"""
)
_QUOTED_ESCAPE = re.compile(r"\\(.)")
#: `event=` as a pair of its own (at the start or after a space): where a jarvis record
#: begins inside whatever a formatter put before it.
_EVENT_AT = re.compile(r"(?:^|(?<=\s))event=(?=[A-Za-z_\"'])")
_ISO_STAMP = re.compile(_TS)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACED_ZONE = re.compile(r"\s+(?=(?:Z|[+-]\d\d:?\d\d)$)")
_WORD = re.compile(r"[A-Za-z_][\w.\-]*")
_LOGFMT_START = re.compile(r"[A-Za-z_][\w.\-]*=")
#: Keys that hold a JSON record's time, message and level, in order of preference.
_JSON_TS = ("ts", "timestamp", "time", "asctime", "@timestamp")
_JSON_EVENT = ("event", "message", "msg")
_JSON_LEVEL = ("level", "levelname", "severity", "log.level")


@dataclass(frozen=True, slots=True)
class Record:
    """One whole log line: its dialect, its event (None if it names none) and fields.

    `fields` holds the line's own keys, with `event`, `level` and `ts` (as written)
    filled in from a text head, so a stdlib line and a logfmt line look alike.
    """

    dialect: str
    event: str | None
    fields: dict[str, str]
    ts: float | None


def strip_ansi(text: str) -> str:
    """The text without its ANSI colour sequences."""
    return _ANSI.sub("", text) if "\x1b" in text else text


@lru_cache(maxsize=4096)
def _second(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def parse_time(text: str) -> float | None:
    """Epoch seconds of an ISO-8601-ish stamp (`T` or space, `.` or `,`), or epoch digits.

    Naive stamps are local time, as `logging` and loguru write them by default; a
    syslog stamp (`Dec  7 00:00:00`, journald's `short`) has no year: this year's.
    """
    text = text.strip()
    if text[:1].isalpha():
        return _syslog_time(text)
    text = _SPACED_ZONE.sub("", text).replace(",", ".").replace(" ", "T", 1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    head, dot, rest = text.partition(".")
    if not dot:
        return _second(text) if len(text) >= 19 else _epoch(text)
    digits = len(rest) - len(rest.lstrip("0123456789"))
    whole = _second(head + rest[digits:])
    if whole is None:
        return _epoch(text)
    return whole + int(rest[:digits][:6].ljust(6, "0")) / 1e6


@lru_cache(maxsize=4096)
def _syslog_time(text: str) -> float | None:
    try:
        stamp = datetime.strptime(text, "%b %d %H:%M:%S")
    except ValueError:
        return None
    now = datetime.now()
    when = stamp.replace(year=now.year).timestamp()
    # A December line read in January is last year's: no stamp lies a day ahead.
    if when > now.timestamp() + 86400:
        when = stamp.replace(year=now.year - 1).timestamp()
    return when


def _epoch(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and abs(value) < 1e11 else None  # seconds, not ms


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        if raw[0] == '"':
            return parse_logfmt(f"v={raw}").get("v", raw[1:-1])
        return _QUOTED_ESCAPE.sub(r"\1", raw[1:-1])
    return raw


def pairs(text: str) -> dict[str, str]:
    """The `key=value` pairs of a message; words that are not pairs are ignored."""
    if "=" not in text:
        return {}
    return {key: _unquote(raw) for key, raw in _PAIR.findall(text)}


def _logfmt_record(text: str) -> tuple[str | None, dict[str, str]]:
    """The event and fields of `event=NAME k=v …` anywhere in `text` (None when there is
    no `event=` pair): the pairs from `event=` on, over any pairs before it."""
    at = _EVENT_AT.search(text)
    if at is None:
        return None, {}
    fields = pairs(text[at.start() :])
    event = fields.get("event")
    if not event:
        return None, {}
    if at.start():
        fields = {**pairs(text[: at.start()]), **fields}
    return event, fields


def _message(text: str) -> tuple[str | None, dict[str, str]]:
    """A message's event and fields: `event=NAME` and the logfmt pairs after it, else its
    first word and the pairs after that."""
    if "event=" in text:
        event, fields = _logfmt_record(text)
        if event is not None:
            return event, fields
    words = text.split(None, 1)
    if not words:
        return None, {}
    first = words[0]
    rest = words[1] if len(words) > 1 else ""
    if "=" in first:  # the message is logfmt itself: `event=stream_start trace=…`
        fields = pairs(text)
        return fields.get("event"), fields
    if not _WORD.fullmatch(first):
        return None, {}
    fields = pairs(rest)
    # A word followed by prose ("Started server process") is a sentence, not an event.
    if first in VOCABULARY or not rest.strip() or fields:
        return first, fields
    return None, {}


def _json(text: str) -> Record | None:
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    fields = {str(k): _json_str(v) for k, v in record.items()}
    event = next((fields[k] for k in _JSON_EVENT if k in fields), None)
    if event is not None and (" " in event.strip() or "=" in event):
        # structlog's `log.info("stream_start trace=abc")`: the event is a message.
        event, more = _message(event)
        fields = {**more, **{k: v for k, v in fields.items() if k not in _JSON_EVENT}}
    if event is not None:
        fields["event"] = event
    level = next((fields[k] for k in _JSON_LEVEL if k in fields), None)
    if level is not None:
        fields.setdefault("level", level.lower())
    stamp = next((fields[k] for k in _JSON_TS if fields.get(k)), None)
    return Record("json", event, fields, parse_time(stamp) if stamp else None)


def _json_str(value: object) -> str:
    if value is True:
        return "True"
    if value is False:
        return "False"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def parse_line(line: str | bytes) -> Record | None:
    """The record of one line, or None when it is no whole log event in any known dialect
    (a continuation line, a fragment, noise)."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = strip_ansi(text).strip()
    if not text:
        return None
    if text[0] == "{":
        return _json(text)
    if _LOGFMT_START.match(text):
        return _logfmt(text)
    record = _text(text)
    if record is None:
        record = _prefixed(text) if "event=" in text else _bare(text)
    return record


def _bare(text: str) -> Record | None:
    """The original server's `stream_start trace=…`: a vocabulary name, then pairs."""
    words = text.split(None, 1)
    if words[0] not in VOCABULARY:
        return None
    fields = pairs(words[1]) if len(words) > 1 else {}
    fields["event"] = words[0]
    return Record("plain", words[0], fields, None)


def _logfmt(text: str) -> Record | None:
    """`ts=… level=… event=…`: jarvis's own lines, and any line that starts with a pair."""
    # structlog's KeyValueRenderer quotes with ', which jarvis's parser does not read.
    fields = pairs(text) if "='" in text else parse_logfmt(text)
    stamp = fields.get("ts") or fields.get("time") or fields.get("timestamp")
    event = fields.get("event")
    if event is None and "ts" not in fields and "level" not in fields:
        return None
    return Record("logfmt", event, fields, parse_time(stamp) if stamp else None)


def _text(text: str) -> Record | None:
    """A line with a text head (time, level, logger) before its message."""
    for dialect, head in _HEADS:
        match = head.match(text)
        if match is None:
            continue
        event, fields = _message(text[match.end() :])
        found = {k: v for k, v in match.groupdict().items() if v is not None}
        if "level" in found:
            found["level"] = found["level"].lower()
        if event is not None:
            found["event"] = event
        if fields.get("ts"):  # the record's own stamp (jarvis's logfmt) beats the head's
            found.pop("ts", None)
        fields.update(found)
        stamp = fields.get("ts") or _stamp_before_event(text, match.end())
        return Record(dialect, event, fields, parse_time(stamp) if stamp else None)
    return None


def _stamp_before_event(text: str, default_end: int) -> str | None:
    """The first ISO-8601 stamp before the line's `event=` (else before `default_end`):
    where a format puts its time after the level (Django's `{levelname} {asctime}`)."""
    at = _EVENT_AT.search(text)
    found = _ISO_STAMP.search(text, 0, at.start() if at else default_end)
    return found[0] if found else None


def _prefixed(text: str) -> Record | None:
    """`event=NAME k=v …` after a prefix no head describes (Django's `{levelname}
    {asctime} …`, a custom format): the time is the message's `ts=`, else the first
    ISO-8601 stamp of the prefix."""
    event, fields = _logfmt_record(text)
    if event is None or _CONTROL.search(text):
        return None  # a terminal control sequence before it is no formatter's doing
    stamp = fields.get("ts") or _stamp_before_event(text, len(text))
    return Record("prefixed", event, fields, parse_time(stamp) if stamp else None)


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of text as the reader sees it (verify-hang's unit): `fields` is empty
    when it is no log event; `dialect` names the form it was read in, None when the
    reader knows none."""

    text: str
    fields: dict[str, str]
    dialect: str | None = None

    @property
    def event(self) -> str | None:
        return self.fields.get("event")

    @property
    def parseable(self) -> bool:
        """A whole log event in a dialect the reader knows: a jarvis line, a stdlib or
        loguru line of the user's server, an access line; not a fragment or a
        continuation (a logfmt line must name its event)."""
        if self.dialect is None:
            return False
        return self.dialect != "logfmt" or self.event is not None


def read_line(text: str) -> LogLine:
    """`parse_line` of a text line, with the text kept; anything unreadable has no fields."""
    record = parse_line(text)
    if record is None:
        return LogLine(text, {})
    return LogLine(text, record.fields, record.dialect)


def line_time(line: bytes) -> float | None:
    """The time of a line in any dialect (None if it has none): for the rare lines the
    fast `patterns.line_ts` cannot read (JSON, coloured, bracketed stamps)."""
    record = parse_line(line)
    return None if record is None else record.ts
