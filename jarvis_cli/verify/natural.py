"""Each prompt's natural answer, learnt during a run: what a verdict measures "cut short",
"complete" and "corrupted" against on a server whose model nobody can predict.

The same prompt is streamed in fresh sessions (two at once, in the background
while the first scenarios run). When every answer is the same text the model is
deterministic, and a stream's text must equal it (or, cut short, be a prefix of
it). A stream that does not match asks for proof first (`confirm`): two more
fresh sessions, and only if they say the same again is the model deterministic
for that prompt; otherwise it is not, and no text or length is ever judged: a
complete answer is one that ends with a natural finish and the end marker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from .client import ChatClient, Transcript

#: Fresh sessions streamed per prompt, and again to confirm a model is deterministic.
RUNS = 2

Key = tuple[str, int | None]


@dataclass(frozen=True, slots=True)
class Natural:
    """A prompt's answer when nothing interrupts it."""

    #: The shortest fresh answer: the answer itself when the model is deterministic.
    text: str
    #: How long the slowest fresh answer took.
    seconds: float
    #: Every fresh answer was the same text.
    deterministic: bool
    #: Every fresh answer ended with a natural finish and the end marker: a stream that
    #: does the same said it is complete.
    says_complete: bool = True

    @property
    def chars(self) -> int:
        return len(self.text)

    def describe(self) -> str:
        kind = "deterministic" if self.deterministic else "not deterministic: length varies"
        return f"{self.chars} characters in {self.seconds * 1000:.0f} ms ({kind})"


def natural_of(runs: list[Transcript]) -> Natural | None:
    """What fresh answers say; None unless at least one answered with text."""
    good = [t for t in runs if t.answered and t.text and t.ended_at is not None]
    if not good:
        return None
    return Natural(
        text=min((t.text for t in good), key=len),
        seconds=max((t.ended_at or 0.0) - t.sent_at for t in good),
        deterministic=len(good) == len(runs) and len({t.text for t in good}) == 1,
        says_complete=all(t.complete for t in good),
    )


class Naturals:
    """The natural answers of one run: calibrated once per prompt, shared by scenarios."""

    def __init__(
        self, client: ChatClient, *, deadline: float, session: Callable[[int, int], str]
    ) -> None:
        self._client = client
        self._deadline = deadline
        #: Names the i-th session of the n-th batch of fresh sessions (no scenario uses it).
        self._session = session
        self._batches = 0
        self._running: dict[Key, asyncio.Task[Natural | None]] = {}
        self._confirming: dict[Key, asyncio.Task[Natural | None]] = {}
        self._known: dict[Key, Natural] = {}
        #: Prompts whose natural answer needs no confirming (told, not learnt).
        self._settled: set[Key] = set()

    def __repr__(self) -> str:
        return f"<Naturals known={len(self._known)} calibrating={len(self._running)}>"

    def calibrate(self, prompt: str, max_tokens: int | None) -> asyncio.Task[Natural | None]:
        """Start learning `prompt`'s natural answer (once; later calls share the task)."""
        max_tokens = self._client.capped(max_tokens)  # as a stream records it
        key = (prompt, max_tokens)
        if key not in self._running:
            self._running[key] = asyncio.create_task(self._learn(prompt, max_tokens))
        return self._running[key]

    async def get(self, prompt: str, max_tokens: int | None) -> Natural | None:
        """`prompt`'s natural answer; None when no fresh session got a complete one."""
        max_tokens = self._client.capped(max_tokens)
        key = (prompt, max_tokens)
        if key in self._confirming:
            return await self._confirming[key]
        known = self._known.get(key)
        return known if known is not None else await self.calibrate(prompt, max_tokens)

    def know(
        self, prompt: str, max_tokens: int | None, natural: Natural, *, settled: bool = True
    ) -> None:
        """Take `natural` as `prompt`'s answer; `settled`, `confirm` asks no fresh session
        about it (else it is as good as learnt)."""
        max_tokens = self._client.capped(max_tokens)
        self._known[(prompt, max_tokens)] = natural
        if settled:
            self._settled.add((prompt, max_tokens))
        else:
            self._settled.discard((prompt, max_tokens))

    async def confirm(self, prompt: str, max_tokens: int | None) -> Natural | None:
        """A stream did not match `prompt`'s deterministic answer: is the model really
        deterministic? Two more fresh sessions (once per prompt) must give the very same
        text; if any differs, or fails to answer, the model is taken as not deterministic
        and no text is judged. Returns the natural answer as it now stands."""
        max_tokens = self._client.capped(max_tokens)
        key = (prompt, max_tokens)
        natural = await self.get(prompt, max_tokens)
        if natural is None or not natural.deterministic or key in self._settled:
            return natural
        if key not in self._confirming:
            self._confirming[key] = asyncio.create_task(self._reconsider(natural, key))
        return await self._confirming[key]

    async def stop(self) -> None:
        """Cancel what is still calibrating (a run cut short) and wait for it to go."""
        tasks = [*self._running.values(), *self._confirming.values()]
        running = [t for t in tasks if not t.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=1.0)

    async def _reconsider(self, natural: Natural, key: Key) -> Natural | None:
        runs = await self._fresh(*key)
        again = natural_of(runs)
        same = again is not None and again.deterministic and again.text == natural.text
        confirmed = natural if same else _not_deterministic(natural, runs)
        self._known[key] = confirmed
        return confirmed

    async def _learn(self, prompt: str, max_tokens: int | None) -> Natural | None:
        return natural_of(await self._fresh(prompt, max_tokens))

    async def _fresh(self, prompt: str, max_tokens: int | None) -> list[Transcript]:
        batch, self._batches = self._batches, self._batches + 1
        return await asyncio.gather(
            *(
                self._client.stream(
                    prompt,
                    session=self._session(batch, i),
                    label=f"natural{batch}.{i}",
                    max_tokens=max_tokens,
                    deadline=self._deadline,
                )
                for i in range(RUNS)
            )
        )


def _not_deterministic(natural: Natural, runs: list[Transcript]) -> Natural:
    good = [t for t in runs if t.answered and t.text]
    shortest = min([natural.text, *(t.text for t in good)], key=len)
    return Natural(
        text=shortest,
        seconds=natural.seconds,
        deterministic=False,
        says_complete=natural.says_complete and all(t.complete for t in good),
    )
