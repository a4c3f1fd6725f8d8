"""Where a session id travels: a header, a field of the JSON body, a query parameter or a
cookie (`--session-in header:X-Session-Id`, `body:metadata.session_id`, ...)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from jarvis.exceptions import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class Carrier(enum.StrEnum):
    HEADER = "header"
    BODY = "body"
    QUERY = "query"
    COOKIE = "cookie"


@dataclass(frozen=True, slots=True)
class SessionIn:
    """One place a request carries its session id."""

    carrier: Carrier
    name: str

    def __str__(self) -> str:
        return f"{self.carrier.value}:{self.name}"

    @classmethod
    def parse(cls, text: str, *, option: str = "--session-in") -> SessionIn:
        """`header:NAME | body:DOTTED.PATH | query:NAME | cookie:NAME`, else a usage error."""
        kind, colon, name = text.partition(":")
        choices = ", ".join(f"{c.value}:NAME" for c in Carrier)
        try:
            carrier = Carrier(kind.strip().lower())
        except ValueError:
            raise ConfigError(f"{option} takes one of {choices}, not {text!r}") from None
        name = name.strip()
        if not colon or not _NAME.match(name) or ".." in name or name.strip(".") != name:
            raise ConfigError(f"{option} {text!r}: the name after {kind}: is missing or invalid")
        if carrier is not Carrier.BODY and "." in name and carrier is not Carrier.HEADER:
            raise ConfigError(f"{option} {text!r}: only body: takes a dotted path")
        return cls(carrier, name)

    def place(
        self,
        session: str,
        *,
        headers: dict[str, str],
        body: dict[str, Any],
        params: dict[str, str],
        cookies: dict[str, str],
    ) -> None:
        """Put `session` where this server reads it."""
        if self.carrier is Carrier.HEADER:
            headers[self.name] = session
        elif self.carrier is Carrier.QUERY:
            params[self.name] = session
        elif self.carrier is Carrier.COOKIE:
            cookies[self.name] = session
        else:
            set_path(body, self.name, session)


DEFAULT_SESSION_IN = SessionIn(Carrier.HEADER, "X-Session-Id")


def set_path(document: dict[str, Any], dotted: str, value: object) -> None:
    """`a.b.c` = value, creating the objects on the way."""
    *parents, leaf = dotted.split(".")
    node = document
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[leaf] = value


def get_path(document: object, dotted: str) -> object:
    """The value at `a.b.c` (list indices allowed: `choices.0.delta`), or None."""
    node = document
    for key in dotted.split("."):
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node
