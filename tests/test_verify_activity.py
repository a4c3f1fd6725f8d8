"""The idle rule: a request is hung only when neither it nor any other stream of the run
received a byte for the idle bound; a queued or trickling request is slow, never hung."""

from __future__ import annotations

import asyncio
import time

from jarvis_cli.verify.activity import Activity, until_idle
from jarvis_cli.verify.client import ChatClient
from jarvis_cli.verify.plan import Plan
from jarvis_cli.verify.runner import out_of_budget
from jarvis_cli.verify.scenarios import Context
from jarvis_cli.verify.target import Target


async def test_a_wait_is_cut_only_when_nothing_moved_anywhere_for_the_bound() -> None:
    """While another stream reports bytes every 50 ms, a silent request runs on past the
    bound; once that stream stops, the silent request is cut one bound later."""
    activity = Activity()
    sent = time.monotonic()

    async def other_stream() -> None:
        for _ in range(8):  # 0.4 s of bytes
            await asyncio.sleep(0.05)
            activity.saw()

    feeder = asyncio.create_task(other_stream())
    hung, result = await until_idle(
        asyncio.sleep(30), idle=0.2, own_last=lambda: sent, activity=activity
    )
    elapsed = time.monotonic() - sent
    await feeder
    assert hung and result is None
    assert 0.55 <= elapsed < 1.2, elapsed  # 0.4 s of others' bytes, then 0.2 s of silence


async def test_work_that_finishes_returns_its_result_and_is_not_hung() -> None:
    """The bound is only a bound: work done in time returns what it returned."""

    async def work() -> str:
        await asyncio.sleep(0.01)
        return "done"

    assert await until_idle(work(), idle=1.0, own_last=time.monotonic, activity=Activity()) == (
        False,
        "done",
    )


def test_a_scenario_past_its_budget_is_slow_while_bytes_flow_and_hung_when_none_do() -> None:
    """The last resort: a scenario cut by its budget while the server still streamed is
    FAIL 'slow, not hung' (never a HANG); one cut after the idle bound of silence hangs."""
    clock = [100.0]
    plan = Plan(deadline=5.0)
    client = ChatClient(["http://unused"], model="m", deadline=5.0, clock=lambda: clock[0])
    target = Target("http://unused", "m", True, False, False, None, None, False)
    ctx = Context(plan, target, client, "t1", 0.0, lambda: clock[0])
    try:
        client.activity.saw(99.8)
        slow = out_of_budget(ctx, "overlap", 60.0)
        assert not slow.hung
        assert slow.summary.startswith("slow, not hung: the scenario did not finish within its")
        assert "its last byte 200 ms ago" in slow.summary
        clock[0] = 105.0
        hung = out_of_budget(ctx, "overlap", 60.0)
        assert hung.hung
        assert hung.summary.startswith("hang: the scenario did not finish within 60 s")
    finally:
        asyncio.run(client.aclose())
