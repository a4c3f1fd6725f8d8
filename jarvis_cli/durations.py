"""Durations on the command line: `30s`, `2m`, `500ms`, `1.5h` or plain seconds."""

from __future__ import annotations

import re

from jarvis.exceptions import ConfigError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str, option: str) -> float:
    """Seconds in `text`, or a `ConfigError` naming `option`."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ConfigError(f"{option} takes a duration such as 30s, 2m or 500ms, not {text!r}")
    return float(match.group(1)) * _UNIT[match.group(2)]
