"""The workload of the throughput benchmarks: stream every prompt, check every text against
the synthetic model's answer, and count the tokens that arrived intact."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from _sse_client import new_session, stream_chat

from jarvis.synthetic import expected_tokens


async def stream_all(
    url: str,
    prompts: Sequence[tuple[str | None, str]],
    expected: Callable[[str], str],
    concurrency: int,
    deadline_s: float,
) -> tuple[int, list[str]]:
    """Stream every (session or None, prompt), `concurrency` at a time; return (verified
    tokens, failures). A failure names the session, or the prompt when there is none."""
    queue = list(reversed(prompts))
    failures: list[str] = []
    tokens = 0

    async def worker() -> None:
        nonlocal tokens
        while queue:
            session_id, prompt = queue.pop()
            label = repr(prompt) if session_id is None else session_id
            result = await stream_chat(
                session, url, prompt, session_id=session_id, deadline_s=deadline_s
            )
            want = expected(prompt)
            if result.error or result.status != 200 or not result.done or result.text != want:
                failures.append(
                    f"{label}: status={result.status} done={result.done} "
                    f"chars={len(result.text)}/{len(want)} error={result.error}"
                )
            elif result.end_reason != "completed":
                failures.append(f"{label}: end_reason={result.end_reason}")
            else:  # the text is exactly the expected tokens, however they were batched
                tokens += len(expected_tokens(prompt))

    async with new_session(concurrency) as session, asyncio.timeout(deadline_s):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tokens, failures
