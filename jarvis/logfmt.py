"""Encoders for one log line: logfmt (the default) and JSON lines.

Values that come from clients pass through here, so the encoders guarantee
that no value can split a line or forge a key: every control byte (C0, DEL,
C1) and the Unicode line separators are escaped, any value that is not a
plain token is quoted, and every value is bounded (`bound`: cut past its
field's limit, with a mark that says the original length).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from .vocabulary import CUT_MARK, VALUE_LIMIT, value_limit

# A value made only of these characters is written bare: `session=abc-1`.
_BARE = re.compile(r"[A-Za-z0-9_.:/@+\-]+")
# Everything a quoted value must escape: the quote, the backslash, control
# characters, the characters `str.splitlines` also treats as line breaks, and lone
# surrogates (which cannot be encoded, and would make the line unwritable).
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]')
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


# Rendered short strings (ids, sessions, reasons) repeat on every line of a stream:
# remember them, within a bound, instead of running the regex each time.
_RENDERED: dict[str, str] = {}
_RENDERED_MAX = 8192


def _render_str(text: str) -> str:
    if _BARE.fullmatch(text):
        return text
    return '"' + _NEEDS_ESCAPE.sub(_escape_char, text) + '"'


def bound(key: str, value: object) -> object:
    """`value` as a log line may hold it: whole if short enough for field `key`, else its
    first `value_limit(key)` characters and `…[N chars]` (N: its whole length)."""
    kind = type(value)
    if kind is str:
        text: str = value  # type: ignore[assignment]
    elif kind is int or kind is float or kind is bool or value is None:
        return value
    else:
        text = str(value)
    if len(text) <= VALUE_LIMIT:
        return value
    limit = value_limit(key)
    if len(text) <= limit:
        return value
    return text[:limit] + CUT_MARK.format(length=len(text))


def bound_fields(fields: Mapping[str, object]) -> Mapping[str, object]:
    """`fields` with every value bounded (the same mapping when none needed it)."""
    for key, value in fields.items():
        if bound(key, value) is not value:
            return {k: bound(k, v) for k, v in fields.items()}
    return fields


def format_value(value: object) -> str:
    """Render one logfmt value: bare when safe, else quoted and escaped."""
    if type(value) is str:
        rendered = _RENDERED.get(value)
        if rendered is None:
            rendered = _render_str(value)
            if len(value) <= 256:
                if len(_RENDERED) >= _RENDERED_MAX:
                    _RENDERED.clear()
                _RENDERED[value] = rendered
        return rendered
    kind = type(value)
    if kind is int or kind is float:
        return str(value)
    if value is True:
        return "True"
    if value is False:
        return "False"
    if value is None:
        return '""'
    return _render_str(str(value))


def format_logfmt(
    ts: str, level: str, event: str, fields: Mapping[str, object], *, bounded: bool = False
) -> str:
    """One logfmt line (no newline): `ts=… level=… event=…` first, then the fields, each
    value bounded (`bounded=True`: the caller already bounded them, so nothing is cut
    twice)."""
    head = f"ts={ts} level={level} event={event}"
    if not fields:
        return head
    fv = format_value
    if bounded:
        return head + " " + " ".join([f"{key}={fv(value)}" for key, value in fields.items()])
    return (
        head + " " + " ".join([f"{key}={fv(bound(key, value))}" for key, value in fields.items()])
    )


def format_json(ts: str, level: str, event: str, fields: Mapping[str, object]) -> str:
    """One JSON line (no newline), each value bounded; `ensure_ascii` escapes every
    non-ASCII character."""
    record: dict[str, object] = {"ts": ts, "level": level, "event": event}
    record.update(bound_fields(fields))
    return json.dumps(record, ensure_ascii=True, separators=(",", ":"), default=str)


_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)')
_UNESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)")
_UNSHORT = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def _unescape(match: re.Match[str]) -> str:
    body = match.group(1)
    if body[0] in "xu" and len(body) > 1:
        return chr(int(body[1:], 16))
    return _UNSHORT.get(body, body)


def parse_logfmt(line: str) -> dict[str, str]:
    """Parse one logfmt line back into its fields (the inverse of `format_logfmt`)."""
    fields: dict[str, str] = {}
    for match in _PAIR.finditer(line):
        key, raw = match.group(1), match.group(2)
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = _UNESCAPE.sub(_unescape, raw[1:-1])
        fields[key] = raw
    return fields
