"""Each prompt's natural answer, learnt during a run: what a verdict measures "cut short"
and "complete" against on a server whose model nobody can predict.

The same prompt is streamed in fresh sessions (two at once, in the background
while the first scenarios run); the shorter answer is the natural length, and
when the two differ the model is not deterministic and a margin applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from .client import ChatClient, Transcript

#: A model whose calibration answers differ may be this much shorter and still count as
#: complete (and must be this much shorter to count as cut).
MARGIN = 0.25
#: Fresh sessions streamed per prompt.
RUNS = 2
#: A natural answer may take this many --deadline to arrive (a slow model's long answer).
DEADLINES = 3

Key = tuple[str, int | None]


@dataclass(frozen=True, slots=True)
class Natural:
    """A prompt's answer when nothing interrupts it: its length and how long it took."""

    chars: int
    seconds: float
    #: Every calibration run gave the same text.
    deterministic: bool

    @property
    def low(self) -> int:
        """The fewest characters a complete answer has; fewer means it was cut short."""
        if self.deterministic:
            return self.chars
        return int(self.chars * (1 - MARGIN))

    def describe(self) -> str:
        kind = "deterministic" if self.deterministic else f"varies, ±{MARGIN:.0%}"
        return f"{self.chars} characters in {self.seconds * 1000:.0f} ms ({kind})"


class Naturals:
    """The natural answers of one run: calibrated once per prompt, shared by scenarios."""

    def __init__(
        self, client: ChatClient, *, deadline: float, session: Callable[[int, int], str]
    ) -> None:
        self._client = client
        self._deadline = deadline * DEADLINES
        #: Names the i-th session of the n-th calibration (fresh: no scenario uses it).
        self._session = session
        self._running: dict[Key, asyncio.Task[Natural | None]] = {}
        self._known: dict[Key, Natural] = {}

    def __repr__(self) -> str:
        return f"<Naturals known={len(self._known)} calibrating={len(self._running)}>"

    def calibrate(self, prompt: str, max_tokens: int | None) -> asyncio.Task[Natural | None]:
        """Start learning `prompt`'s natural answer (once; later calls share the task)."""
        key = (prompt, max_tokens)
        if key not in self._running:
            sessions = [self._session(len(self._running), i) for i in range(RUNS)]
            self._running[key] = asyncio.create_task(self._learn(prompt, max_tokens, sessions))
        return self._running[key]

    async def get(self, prompt: str, max_tokens: int | None) -> Natural | None:
        """`prompt`'s natural answer; None when no fresh session got a complete one."""
        known = self._known.get((prompt, max_tokens))
        return known if known is not None else await self.calibrate(prompt, max_tokens)

    def know(self, prompt: str, max_tokens: int | None, natural: Natural) -> None:
        self._known[(prompt, max_tokens)] = natural

    def learnt(self, t: Transcript) -> None:
        """Take an undisturbed stream (baseline's) as its prompt's natural answer; one
        run alone cannot tell a deterministic model, so the margin applies."""
        if t.answered and t.text and t.ended_at is not None:
            self.know(t.prompt, t.max_tokens, Natural(len(t.text), t.ended_at - t.sent_at, False))

    async def stop(self) -> None:
        """Cancel what is still calibrating (a run cut short) and wait for it to go."""
        running = [t for t in self._running.values() if not t.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=1.0)

    async def _learn(
        self, prompt: str, max_tokens: int | None, sessions: list[str]
    ) -> Natural | None:
        runs = await asyncio.gather(
            *(
                self._client.stream(
                    prompt,
                    session=s,
                    label=f"natural{i}",
                    max_tokens=max_tokens,
                    deadline=self._deadline,
                )
                for i, s in enumerate(sessions)
            )
        )
        good = [t for t in runs if t.answered and t.text and t.ended_at is not None]
        if not good:
            return None
        return Natural(
            chars=min(len(t.text) for t in good),
            seconds=max((t.ended_at or 0.0) - t.sent_at for t in good),
            deterministic=len(good) == len(runs) and len({t.text for t in good}) == 1,
        )
