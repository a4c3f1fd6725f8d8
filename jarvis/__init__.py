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

from ._encoders import AnthropicEvents, Encoder, Encoding, OpenAIChunks, PlainText, StreamEnd
from ._guard import GuardedStream, StreamGuard
from ._stdlog import LOGGER_NAME, LogfmtFormatter
from .exceptions import (
    BadRequest,
    ConfigError,
    JarvisError,
    RegistryUnavailable,
    ServerStartError,
    ToolError,
    UpstreamError,
)
from .settings import GuardSettings
from .vocabulary import EVENTS, CancelReason, EndReason, Event, EventSpec

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
    "Event",
    "EventSpec",
    "GuardSettings",
    "GuardedStream",
    "JarvisError",
    "LogfmtFormatter",
    "OpenAIChunks",
    "PlainText",
    "RegistryUnavailable",
    "ServerStartError",
    "StreamEnd",
    "StreamGuard",
    "ToolError",
    "UpstreamError",
    "__version__",
]
