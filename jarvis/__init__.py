"""jarvis: one stream per chat session, with a lifecycle that cannot hang.

`StreamGuard` is the fix as a library for any FastAPI or Starlette app: a
new prompt cancels its session's live stream and waits (bounded) for its
cleanup; tokens are batched without blocking the loop; every step is logged
with the vocabulary in `EVENTS`. `jarvis serve` is the reference server
built on it.
"""

# No `from __future__ import annotations` here: it would bind `jarvis.annotations`, a
# public name nobody chose (tests/test_package.py holds vars(jarvis) to __all__).
__version__ = "0.1.0"

import importlib
import typing

#: Where each public name is defined. `import jarvis` imports none of these modules: a
#: name loads its module on first use (PEP 562), so the CLI reading
#: `jarvis.vocabulary`, or an app that only builds a guard, pays for what it touches.
_WHERE: dict[str, str] = {
    **dict.fromkeys(
        ("AnthropicEvents", "Encoder", "Encoding", "OpenAIChunks", "PlainText", "StreamEnd"),
        "._encoders",
    ),
    **dict.fromkeys(("ErrorResponse", "GuardedStream", "StreamGuard"), "._guard"),
    **dict.fromkeys(("LOGGER_NAME", "JsonFormatter", "LogfmtFormatter"), "._stdlog"),
    "structlog_fields": "._structlog",
    **dict.fromkeys(
        (
            "BadRequest",
            "ConfigError",
            "JarvisError",
            "RegistryUnavailable",
            "ServerStartError",
            "SessionBusy",
            "ToolError",
            "UpstreamError",
        ),
        ".exceptions",
    ),
    "GuardSettings": ".settings",
    **dict.fromkeys(("EVENTS", "CancelReason", "EndReason", "Event", "EventSpec"), ".vocabulary"),
}

if typing.TYPE_CHECKING:  # what type checkers and editors read; the same names as _WHERE
    from ._encoders import AnthropicEvents, Encoder, Encoding, OpenAIChunks, PlainText, StreamEnd
    from ._guard import ErrorResponse, GuardedStream, StreamGuard
    from ._stdlog import LOGGER_NAME, JsonFormatter, LogfmtFormatter
    from ._structlog import structlog_fields
    from .exceptions import (
        BadRequest,
        ConfigError,
        JarvisError,
        RegistryUnavailable,
        ServerStartError,
        SessionBusy,
        ToolError,
        UpstreamError,
    )
    from .settings import GuardSettings
    from .vocabulary import EVENTS, CancelReason, EndReason, Event, EventSpec


def __getattr__(name: str) -> object:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'jarvis' has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


__all__ = [
    "EVENTS",
    "LOGGER_NAME",
    "AnthropicEvents",
    "BadRequest",
    "CancelReason",
    "ConfigError",
    "Encoder",
    "Encoding",
    "EndReason",
    "ErrorResponse",
    "Event",
    "EventSpec",
    "GuardSettings",
    "GuardedStream",
    "JarvisError",
    "JsonFormatter",
    "LogfmtFormatter",
    "OpenAIChunks",
    "PlainText",
    "RegistryUnavailable",
    "ServerStartError",
    "SessionBusy",
    "StreamEnd",
    "StreamGuard",
    "ToolError",
    "UpstreamError",
    "__version__",
    "structlog_fields",
]
