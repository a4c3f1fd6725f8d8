"""Deliberate bugs that reproduce the original server's failures (docs/background.md).

Switched on with `jarvis serve --fault NAME`, off by default. Each one is a
faithful reproduction of a real mistake, so that `verify-hang` and `diagnose`
can be shown to catch it. Each is a variant of one correct part (registry,
batcher, lifecycle) that overrides a public, documented seam of it; `inject`
swaps them into a guard through its `parts` and `run_class`, and reads no
private name of another module. This is the only module allowed to block the
loop.
"""

from __future__ import annotations

import asyncio
import enum
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import ParamSpec

from ._batcher import Emit, EmitToken, TokenBatcher
from ._encoders import StreamEnd
from ._guard import StreamGuard
from ._lifecycle import StreamRun
from ._registry import StreamRegistry
from ._stream import StreamHandle
from .exceptions import ConfigError

_P = ParamSpec("_P")


class Fault(enum.StrEnum):
    """The deliberate bugs, by their `--fault` name."""

    #: The original broken flush path: `threading.Lock` + `time.sleep` in it.
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

# The original flush path's module-level lock. Taken on the loop thread, it is the bug.
_FLUSH_LOCK = threading.Lock()


async def blocking_flush(delay_s: float, write: Callable[[], Awaitable[None]]) -> None:
    """Flush the way the original broken flush path did.

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


# -- the variants: each overrides one seam of the correct part ---------------------


class _NoCancelRegistry(StreamRegistry):
    """no-cancel: a new prompt goes ahead without touching the session's older stream."""

    async def supersede(self, handle: StreamHandle, previous: list[StreamHandle]) -> None:
        return None


class _UnfencedRegistry(StreamRegistry):
    """ignore-cancel's registry half: an overrunning stream is not fenced."""

    def fence(self, stream: StreamHandle, *, by: StreamHandle) -> None:
        return None


def _locked(delay_s: float, write: Callable[_P, Awaitable[bool]]) -> Callable[_P, Awaitable[bool]]:
    """`write`, made the original broken way: through `blocking_flush`'s lock and sleep."""

    async def locked(*args: _P.args, **kwargs: _P.kwargs) -> bool:
        sent = False

        async def once() -> None:
            nonlocal sent
            sent = await write(*args, **kwargs)

        await blocking_flush(delay_s, once)
        return sent

    return locked


class _BlockingBatcher(TokenBatcher):
    """blocking-flush: every write, a batch or one token, goes through the original flush
    path's lock and `time.sleep`."""

    def open(
        self,
        request_id: str,
        emit: Emit,
        emit_token: EmitToken | None = None,
        *,
        trace: str | None = None,
    ) -> None:
        delay_s = self.flush_ms / 1000
        token = None if emit_token is None else _locked(delay_s, emit_token)
        super().open(request_id, _locked(delay_s, emit), token, trace=trace)


class _IgnoreCancel(StreamRun):
    """ignore-cancel: the producer never checks its cancel signal, and nobody waits on it."""

    def stop_requested(self) -> bool:
        return False

    async def await_producer(self, producer: asyncio.Task[None]) -> None:
        await asyncio.wait({producer})


class _SkipCleanup(StreamRun):
    """skip-cleanup: the `finally` ends the response but leaves buffers and registry entry."""

    async def cleanup(self, end: StreamEnd) -> None:
        await self.emitter.finish(end)


class _SlowCleanup(StreamRun):
    """slow-cleanup: the `finally` stalls past the cancel wait before cleaning up."""

    async def cleanup(self, end: StreamEnd) -> None:
        await asyncio.sleep(slow_cleanup_delay(self.parts.cancel_wait))
        await super().cleanup(end)


#: In method-resolution order: slow-cleanup stalls first, then hands on (to skip-cleanup
#: when both are on, which then skips), as the bugs compose in a real `finally`.
_RUNS: dict[Fault, type[StreamRun]] = {
    Fault.IGNORE_CANCEL: _IgnoreCancel,
    Fault.SLOW_CLEANUP: _SlowCleanup,
    Fault.SKIP_CLEANUP: _SkipCleanup,
}


def inject(guard: StreamGuard, faults: Iterable[Fault]) -> StreamGuard:
    """Switch deliberate bugs on in `guard`: the one place the server wires them in."""
    chosen = frozenset(faults)
    if not chosen:
        return guard
    parts = guard.parts
    log, metrics = parts.log, parts.metrics
    if Fault.NO_CANCEL in chosen or Fault.IGNORE_CANCEL in chosen:
        if type(parts.registry) is not StreamRegistry:
            raise ConfigError(
                "--fault no-cancel and ignore-cancel are variants of the in-process registry; "
                "drop --registry to reproduce them"
            )
        bases = tuple(
            kind
            for fault, kind in (
                (Fault.NO_CANCEL, _NoCancelRegistry),
                (Fault.IGNORE_CANCEL, _UnfencedRegistry),
            )
            if fault in chosen
        )
        registry_class = type("FaultyRegistry", bases, {})
        settings = guard.settings
        parts.registry = registry_class(
            log,
            cancel_wait=parts.cancel_wait,
            metrics=metrics,
            on_busy=settings.on_busy,
            queue_wait=settings.queue_wait,
        )
    if Fault.BLOCKING_FLUSH in chosen:
        old = parts.batcher
        parts.batcher = _BlockingBatcher(
            log, flush_ms=old.flush_ms, flush_bytes=old.flush_bytes, metrics=metrics
        )
    runs = tuple(run for fault, run in _RUNS.items() if fault in chosen)
    if runs:
        guard.run_class = type("FaultyRun", runs, {})
    return guard
