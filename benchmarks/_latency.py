"""What the cancel-latency benchmarks share: the long A streams that keep sessions busy,
the B probe that supersedes one, and the statistics and server-log summary of a run."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from _report import percentile
from _sse_client import StreamResult, stream_chat

from jarvis.logfmt import parse_logfmt

PROMPT_B = "What is 2+2?"
BUSY = "busy session"
IDLE = "idle session"


def a_stream_tokens(token_rate: float, probe_rounds: int, sessions: int, probe_rate: float) -> int:
    """max_tokens of an A stream: long enough to outlive the run (B or the client's exit
    ends it), and no longer: the synthetic model builds the whole token list before token one."""
    planned_s = probe_rounds * sessions / probe_rate + 60
    return max(400, int(token_rate * planned_s))


async def active_streams(session: aiohttp.ClientSession, url: str) -> int:
    async with asyncio.timeout(10), session.get(f"{url}/healthz") as response:
        return int((await response.json())["active_streams"])


class Background:
    """The long A streams, one per session, kept streaming until the probes are done."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, deadline_s: float, max_tokens: int
    ) -> None:
        self._session = session
        self._url = url
        self._deadline_s = deadline_s
        self._max_tokens = max_tokens
        self._count = 0
        self.tasks: set[asyncio.Task[StreamResult]] = set()
        self.results: list[StreamResult] = []
        #: Set once the session's latest A stream has sent its first token.
        self.streaming: dict[str, asyncio.Event] = {}
        #: Streams still running when the probes were done; the client walks away from them.
        self.abandoned = 0

    def start(self, session_id: str) -> asyncio.Event:
        """Start a long stream in `session_id`; the event is set at its first token."""
        self._count += 1
        started = self.streaming[session_id] = asyncio.Event()
        task = asyncio.create_task(
            stream_chat(
                self._session,
                self._url,
                f"Long essay number {self._count}",
                session_id=session_id,
                max_tokens=self._max_tokens,
                deadline_s=self._deadline_s,
                first_content=started,
                keep_text=False,
            )
        )
        self.tasks.add(task)
        task.add_done_callback(self._collect)
        return started

    def _collect(self, task: asyncio.Task[StreamResult]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            self.abandoned += 1
        else:
            self.results.append(task.result())

    def end_reasons(self) -> Counter[str]:
        """How the A streams ended: their end reason, else their error's kind."""
        reasons = Counter(
            r.end_reason or (r.error or "no terminal chunk").split(":")[0] for r in self.results
        )
        if self.abandoned:
            reasons["still streaming at the end"] = self.abandoned
        return reasons

    async def stop(self) -> None:
        """Cancel what still streams (the client leaves) and wait for it, bounded."""
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=10)


async def ramp(background: Background, sessions: list[str], batch: int, deadline_s: float) -> None:
    """Open one A stream per session, `batch` at a time, each batch streaming before the next."""
    for i in range(0, len(sessions), batch):
        events = [background.start(s) for s in sessions[i : i + batch]]
        async with asyncio.timeout(deadline_s):
            await asyncio.gather(*(e.wait() for e in events))


async def send_b(
    probes: aiohttp.ClientSession,
    url: str,
    background: Background,
    kind: str,
    session_id: str,
    at: float,
) -> StreamResult:
    """Send B to `url` at loop time `at`; a busy session must be streaming A again first."""
    await asyncio.sleep(max(0.0, at - asyncio.get_running_loop().time()))
    if kind == BUSY:
        # A refilled session must be streaming again before it is probed again.
        async with asyncio.timeout(10):
            await background.streaming[session_id].wait()
    return await stream_chat(probes, url, PROMPT_B, session_id=session_id, deadline_s=30)


def probe_failure(result: StreamResult, want: str) -> str | None:
    """Why a B probe does not count (None when it streamed `want` to completion, timed)."""
    if (
        result.error
        or result.status != 200
        or not result.done
        or result.text != want
        or result.end_reason != "completed"
        or result.first_content_ms is None
    ):
        return (
            f"status={result.status} done={result.done} "
            f"end={result.end_reason} error={result.error}"
        )
    return None


async def wait_until_no_streams(session: aiohttp.ClientSession, url: str) -> int:
    """Poll /healthz until the server has no active stream; the count last seen (bounded)."""
    async with asyncio.timeout(15):
        left_open = await active_streams(session, url)
        while left_open:
            await asyncio.sleep(0.1)
            left_open = await active_streams(session, url)
    return left_open


def first_token_stats(values: list[float]) -> dict[str, float]:
    """n, p50, p90, p99 and max of first-token latencies (ms)."""
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values, default=float("nan")),
    }


def paired_extra(pairs: dict[tuple[int, int], dict[str, float]]) -> dict[str, float]:
    """p50 and p99 of each busy probe minus its idle neighbour: both see the same stalls."""
    paired = [p[BUSY] - p[IDLE] for p in pairs.values() if len(p) == 2]
    return {"p50": percentile(paired, 50), "p99": percentile(paired, 99)}


def server_log_summary(log_file: Path) -> dict[str, Any]:
    """What the server itself logged: its waits for cancelled streams, and its loop lag."""
    waited: list[float] = []
    timeouts = blocked = 0
    max_lag = 0.0
    with log_file.open(encoding="utf-8") as lines:
        for line in lines:
            if "event=prev_stream_" not in line and "event=loop_" not in line:
                continue
            fields = parse_logfmt(line)
            event = fields.get("event")
            if event == "prev_stream_finished_cleanly":
                waited.append(float(fields["waited_ms"]))
            elif event == "prev_stream_timeout_on_cancel":
                timeouts += 1
            elif event == "loop_lag":
                max_lag = max(max_lag, float(fields["max_lag_ms"]))
            elif event == "loop_blocked":
                blocked += 1
    return {
        "cancel_waits": len(waited),
        "waited_ms_p50": percentile(waited, 50),
        "waited_ms_p99": percentile(waited, 99),
        "waited_ms_max": max(waited, default=float("nan")),
        "timeouts_on_cancel": timeouts,
        "loop_lag_max_ms": max_lag,
        "loop_blocked": blocked,
    }
