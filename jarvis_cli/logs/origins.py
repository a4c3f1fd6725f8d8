"""Which process wrote each log file: its `server_start` says the worker, host and pid.

In a fleet every worker (or host) writes a file of its own; a report that merges
them names each file with the process behind it: `system.w2.log (worker 2, pid 1234)`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .sources import Sources

#: Listen addresses that name no one machine: not worth a label.
_ANY_HOST = frozenset({"", "0.0.0.0", "::", "127.0.0.1", "::1", "localhost"})  # noqa: S104


@dataclass(frozen=True, slots=True)
class Origin:
    """One server process, as its `server_start` line describes it."""

    worker: str | None = None
    host: str | None = None
    pid: str | None = None

    @classmethod
    def of(cls, fields: dict[str, str]) -> Origin | None:
        """The origin a `server_start` names, or None if it names no worker, host nor pid."""
        host = fields.get("host")
        origin = cls(
            fields.get("worker") or None,
            host if host not in _ANY_HOST else None,
            fields.get("pid") or None,
        )
        return origin if origin != cls() else None

    @property
    def label(self) -> str:
        """`worker 2, host 10.0.0.5, pid 1234`, with only the parts the line had."""
        parts = [
            f"{name} {value}"
            for name, value in (("worker", self.worker), ("host", self.host), ("pid", self.pid))
            if value is not None
        ]
        return ", ".join(parts)


def label_sources(sources: Sources, starts: Iterable[tuple[int, Origin]]) -> dict[str, str]:
    """File name -> the label of the process(es) that wrote it.

    `starts` are the `server_start` lines seen (ref, origin). A file with none takes
    the last process of the older files of its input (the start was rotated away);
    a file with several restarts names each process, in order.
    """
    seen: dict[int, list[Origin]] = {}
    for ref, origin in starts:
        found = seen.setdefault(sources.source_of(ref).index, [])
        if origin not in found:
            found.append(origin)
    labels: dict[str, str] = {}
    for files in sources.inputs():
        last: list[Origin] = []
        for source in files:
            origins = seen.get(source.index) or last[-1:]
            if origins:
                labels[source.name] = " then ".join(o.label for o in origins)
            last = origins
    return labels
