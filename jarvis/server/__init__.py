"""`jarvis serve`: the reference OpenAI-compatible server, one client of `StreamGuard`.

It is the guard, plus a token source (the synthetic model or an upstream
server), plus the OpenAI endpoints, health, streams and metrics.
"""

from __future__ import annotations

from ..config import ServerConfig
from .app import create_app
from .context import ServerContext
from .run import JarvisServer, serve

__all__ = ["JarvisServer", "ServerConfig", "ServerContext", "create_app", "serve"]
