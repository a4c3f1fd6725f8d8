"""How the tools speak to a chat server that is not ours: its dialect, where the session
travels, how its SSE stream reads, and a target file that describes any other API.

verify-hang, swarm and the locustfile all go through this one package, so a
server is read the same way by every tool.
"""

from __future__ import annotations

from .dialect import Dialect, Piece, dialect_named
from .request import ChatRequest
from .session import SessionIn
from .sse import SSEDecoder, SSEEvent
from .targetfile import TargetFile, load_target

__all__ = [
    "ChatRequest",
    "Dialect",
    "Piece",
    "SSEDecoder",
    "SSEEvent",
    "SessionIn",
    "TargetFile",
    "dialect_named",
    "load_target",
]
