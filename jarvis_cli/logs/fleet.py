"""The processes behind a log, one per input, as far as a verdict needs them: the
registry each one's server named, and the registry outages each one saw.

Every process of a fleet logs its own view: an outage is one input's, from its first
`registry_unavailable` to its `registry_recovered`, its restart, or the end of the log.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

#: What a server_start says of an in-process registry (no shared registry).
MEMORY_REGISTRY = "memory"


@dataclass(slots=True)
class Outage:
    """One process's view of the shared registry being down, from its first
    `registry_unavailable` on."""

    first: int
    last: int
    failures: int = 0
    ops: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    first_refused: int | None = None
    #: Opened by `op=start`: the outage of a process still starting (a fleet worker that
    #: starts down), which its own server_start continues rather than ends.
    starting: bool = False

    def summary(self) -> str:
        ops = ", ".join(f"{op} {n}" for op, n in self.ops.most_common())
        return (
            f"{self.failures} failed registry operation(s) ({ops}); "
            f"{self.refused} prompt(s) refused with 503"
        )


class Fleet:
    """Per input (a process's file and its rotated set): its registry and its outage."""

    def __init__(self) -> None:
        #: Per input, the registry its last server_start named (`memory`, `redis://…`).
        self.registry: dict[int, str] = {}
        #: Per input, the registry outage going on (registry_unavailable, not recovered).
        self.outages: dict[int, Outage] = {}
        #: Whether the log shows a registry shared by processes (a fleet).
        self.shared_registry = False

    def started(self, here: int, registry: str | None) -> None:
        """A server started in input `here`, naming its registry (or not)."""
        if registry:
            self.registry[here] = registry
            self.shared_registry |= registry != MEMORY_REGISTRY

    def restarted(self, here: int) -> Outage | None:
        """The outage the process of input `here` had not seen end when it restarted:
        the new process has its own registry state. An outage the new process itself
        logged while starting (`op=start`) is its own, and goes on."""
        outage = self.outages.get(here)
        if outage is not None and outage.starting:
            outage.starting = False
            return None
        return self.outages.pop(here, None)

    def unavailable(self, here: int, ref: int, op: str | None) -> Outage | None:
        """A registry operation failed in input `here` (a `registry_unavailable` line).

        `op=start` is a new process of that input starting during an outage: the outage
        of the process before it, if one was going on, ends here unrecovered (returned)."""
        self.shared_registry = True
        ended = self.outages.pop(here, None) if op == "start" else None
        outage = self.outages.get(here)
        if outage is None:
            outage = self.outages[here] = Outage(ref, ref, starting=op == "start")
        outage.last = ref
        outage.failures += 1
        outage.ops[op or "?"] += 1
        return ended

    def recovered(self, here: int) -> Outage | None:
        """The registry answers input `here` again: the outage it ends (None when the
        log began during it)."""
        self.shared_registry = True
        return self.outages.pop(here, None)

    def refused(self, here: int, ref: int) -> bool:
        """A prompt was refused with 503 in input `here`: whether an outage explains it."""
        outage = self.outages.get(here)
        if outage is None:
            return False
        outage.refused += 1
        if outage.first_refused is None:
            outage.first_refused = ref
        return True

    def registry_name(self, here: int) -> str:
        """How a finding names the registry of input `here`."""
        name = self.registry.get(here)
        return "the shared registry" + (f" {name}" if name and name != MEMORY_REGISTRY else "")

    def across(self, older: int, newer: int) -> str:
        """What it means that two streams of a session ran in inputs `older` and `newer`
        ("" when they ran in one)."""
        if older == newer:
            return ""
        registries = {self.registry.get(older), self.registry.get(newer)}
        if MEMORY_REGISTRY in registries:
            return (
                "; they ran in two processes (two log inputs), one at least with its registry "
                "in memory, so neither knew of the other's stream: a fleet needs one shared "
                "registry (--registry redis://…)"
            )
        if len(registries) == 1 and None not in registries:
            return f"; they ran in two processes sharing the registry {registries.pop()}"
        return "; they ran in two processes (two log inputs)"
