"""Type aliases shared across the package (ASGI callables, token sources)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from .chat import ChatRequest
from .vocabulary import EndReason

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class TokenSource(Protocol):
    """Where tokens come from: the synthetic model or an upstream server.

    `stream` must await the loop between tokens, so the producer built on it
    always yields.
    """

    name: str

    def stream(self, request: ChatRequest) -> AsyncGenerator[str, None]: ...

    async def aclose(self) -> None: ...


class Emitter(Protocol):
    """Where flushed batches go: an SSE response, or a collector for `stream: false`."""

    async def start(self) -> None: ...

    async def token(self, text: str) -> bool:
        """One token from the producer task (token by token); False if nothing was sent."""
        ...

    async def tokens(self, text: str, count: int) -> bool:
        """A batch of `count` tokens from any task; False if nothing was sent."""
        ...

    async def finish(
        self,
        reason: EndReason,
        finish_reason: str,
        usage: tuple[int, int] | None,
        error: str | None,
    ) -> None: ...
