"""SIGTERM for the async commands: a cancellation, so their `finally` blocks stop what they
started (embedded servers, locust processes) instead of leaving them behind."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import TypeVar

T = TypeVar("T")


async def until_terminated(work: Coroutine[None, None, T]) -> T:
    """Run `work`, turning SIGTERM into the cancellation of the running task."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not main thread
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await work
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
