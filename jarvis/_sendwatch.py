"""One task that bounds every stream's token writes: the send watch.

A timer per token write (`asyncio.timeout`) was a fifth of the server's CPU
token by token, and a task per stream kept a traceback cycle per stream
alive until a full GC pass; one watch for all streams costs neither.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Watched(Protocol):
    """A stream writer the watch can check and, when stuck, end."""

    def check_send(self, now: float) -> None: ...


class SendWatch:
    """One task that ends token writes stuck longer than `send_timeout`, for all streams.

    It runs only while some stream is registered, checking four times per timeout.
    """

    def __init__(self, send_timeout: float) -> None:
        self.send_timeout = send_timeout
        self._emitters: set[Watched] = set()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<SendWatch streams={len(self._emitters)} timeout={self.send_timeout}s>"

    def add(self, emitter: Watched) -> None:
        self._emitters.add(emitter)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, emitter: Watched) -> None:
        self._emitters.discard(emitter)

    async def _run(self) -> None:
        try:
            while self._emitters:
                await asyncio.sleep(self.send_timeout / 4)
                now = time.monotonic()
                for emitter in list(self._emitters):
                    emitter.check_send(now)
        finally:
            self._task = None
