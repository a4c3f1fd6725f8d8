"""The headers every request to the server carries: `--header 'Name: value'` and the API
key, checked once and sent by every client (httpx, the raw sockets, the prober).

A header that cannot go on the wire (no colon, a name that is not an HTTP token, a
CR or LF in the value) is a usage error, and so is one the tools write themselves
(`Host`, `Content-Length`...): a raw-socket request would carry it twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from jarvis.exceptions import ConfigError

#: RFC 9110 `token`: the characters a field name may have.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: Headers the tools write on every request themselves (framing, routing, the JSON body
#: and the event stream they ask for).
RESERVED = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "content-type", "accept"}
)

Header = tuple[str, str]


def parse_header(text: str, *, option: str = "--header") -> Header:
    """`'Name: value'` as (name, value); anything that cannot go on the wire is a
    ConfigError naming `option`."""
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not name:
        raise ConfigError(f"{option} {text!r}: write it as 'Name: value'")
    if not _TOKEN.match(name):
        raise ConfigError(f"{option} {text!r}: {name!r} is not a valid header name")
    if any(c in value for c in "\r\n\0"):
        raise ConfigError(f"{option} {name}: the value holds a line break or NUL")
    if name.lower() in RESERVED:
        raise ConfigError(f"{option} {name}: verify-hang writes this header itself")
    return name, value


def parse_headers(
    values: Iterable[str] | Mapping[str, str] | None, *, option: str = "--header"
) -> tuple[Header, ...]:
    """Each `'Name: value'` (or a mapping's items, checked the same way), in order."""
    if values is None:
        return ()
    if isinstance(values, Mapping):
        values = [f"{name}: {value}" for name, value in values.items()]
    elif isinstance(values, str):
        values = [values]
    return tuple(parse_header(text, option=option) for text in values)


def merged(*sources: Mapping[str, str] | Iterable[Header]) -> dict[str, str]:
    """One dict of headers; a later source wins over an earlier one for the same name,
    whatever its case (`authorization` from --header replaces the API key's)."""
    out: dict[str, str] = {}
    for source in sources:
        pairs = source.items() if isinstance(source, Mapping) else source
        for name, value in pairs:
            for old in [k for k in out if k.lower() == name.lower()]:
                del out[old]
            out[name] = value
    return out


def names(headers: Mapping[str, str]) -> str:
    """The names alone, for a banner or a message: values may be secrets."""
    return ", ".join(headers) or "none"
