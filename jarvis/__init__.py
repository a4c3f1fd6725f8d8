"""jarvis: a reference LLM streaming server that cannot hang on overlapping prompts.

The package is the server and the library it is built from: the stream
registry, the token batcher, the log vocabulary and its encoders.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import ServerConfig
from .exceptions import (
    BadRequest,
    ConfigError,
    JarvisError,
    ServerStartError,
    UpstreamError,
)
from .vocabulary import EVENTS, Event, EventSpec

__all__ = [
    "EVENTS",
    "BadRequest",
    "ConfigError",
    "Event",
    "EventSpec",
    "JarvisError",
    "ServerConfig",
    "ServerStartError",
    "UpstreamError",
    "__version__",
]
