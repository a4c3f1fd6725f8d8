"""Deliberate bugs that reproduce the failures the seeds describe.

Switched on with `jarvis serve --fault NAME`, off by default. Each one is a
faithful reproduction of a real mistake, so that `verify-hang` and `diagnose`
can be shown to catch it. This is the only module allowed to block the loop.
"""

from __future__ import annotations

import asyncio
import enum
import threading
import time
from collections.abc import Awaitable, Callable


class Fault(enum.StrEnum):
    """The deliberate bugs, by their `--fault` name."""

    #: The seeds' "before": `threading.Lock` + `time.sleep` in the flush path.
    #: Every flush blocks the loop for the debounce window; two streams that
    #: flush at about the same time deadlock the loop for good.
    BLOCKING_FLUSH = "blocking-flush"
    #: A new prompt is registered without cancelling or waiting for the old
    #: stream: two streams of one session run at once.
    NO_CANCEL = "no-cancel"
    #: The producer never checks its cancel event and the fence is off: a
    #: superseded stream keeps emitting beside its successor.
    IGNORE_CANCEL = "ignore-cancel"
    #: The `finally` skips `cleanup_request_buffers` and the registry pop: the
    #: stream leaks and every later prompt of its session waits it out.
    SKIP_CLEANUP = "skip-cleanup"
    #: Cleanup takes longer than `--cancel-wait`: the new prompt times out
    #: waiting (`prev_stream_timeout_on_cancel`).
    SLOW_CLEANUP = "slow-cleanup"


FAULT_HELP: dict[Fault, str] = {
    Fault.BLOCKING_FLUSH: "threading.Lock + time.sleep in the flush path (hangs under overlap)",
    Fault.NO_CANCEL: "register a new prompt without cancelling the old stream",
    Fault.IGNORE_CANCEL: "the producer ignores cancellation and the fence is off",
    Fault.SKIP_CLEANUP: "the finally skips buffer cleanup and the registry pop",
    Fault.SLOW_CLEANUP: "cleanup outlasts --cancel-wait",
}

# The seeds' module-level lock. Taken on the event loop thread, it is the bug.
_FLUSH_LOCK = threading.Lock()


async def blocking_flush(delay_s: float, write: Callable[[], Awaitable[None]]) -> None:
    """Flush the way the seeds' broken `_flush_buffer` did.

    The lock is held across an await (publishing yields to the loop), so the
    next flush of any stream calls `acquire()` on the loop thread while the
    holder is suspended: the loop stops for good, and only `kill -9` helps.
    """
    _FLUSH_LOCK.acquire()  # blocks the whole loop while another stream holds it
    try:
        time.sleep(delay_s)  # blocks the loop for the debounce window
        await write()
        await asyncio.sleep(0)  # publishing to subscribers yields, lock still held
    finally:
        _FLUSH_LOCK.release()


def slow_cleanup_delay(cancel_wait: float) -> float:
    """How long `slow-cleanup` stalls the `finally`: well past the cancel wait."""
    return cancel_wait * 1.5 + 0.5
