"""Type aliases and protocols shared inside the package (ASGI callables, emitters)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from ._encoders import StreamEnd

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Emitter(Protocol):
    """Where one stream's flushed batches go: an SSE response, or the user's `write`."""

    async def start(self) -> None: ...

    async def token(self, text: str) -> bool:
        """One token from the producer task (token by token); False if nothing was sent."""
        ...

    async def tokens(self, text: str, count: int) -> bool:
        """A batch of `count` tokens from any task; False if nothing was sent."""
        ...

    async def finish(self, end: StreamEnd) -> None:
        """The stream is over: its last bytes, if any."""
        ...

    def silent_for(self, now: float) -> float | None:
        """Seconds since the last write began (`time.monotonic`); None when no keepalive
        may be written now (or ever: a transport that has none)."""
        ...

    async def ping(self) -> bool:
        """A keepalive that no reader takes for text; False if nothing was sent."""
        ...
