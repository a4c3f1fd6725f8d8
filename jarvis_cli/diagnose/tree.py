"""The debugging decision tree (docs/background.md), as data: questions, the findings that
answer them, and when a question does not apply to the log at hand."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from ..logs.analysis import Analyzer
from ..logs.findings import CLEANUP_UNJUDGED, Finding, FindingId, Severity
from ..logs.rules import NO_BATCHING_MIN_FLUSHES


class Status(enum.StrEnum):
    PASS = "pass"  # noqa: S105 - a check status, not a secret
    WARN = "warn"
    FAIL = "fail"
    NOT_APPLICABLE = "n/a"


@dataclass(slots=True)
class Node:
    """One question; a leaf is answered by one finding id, a branch by its children."""

    question: str
    finding: FindingId | None = None
    applies: Callable[[Analyzer], bool] = lambda a: True
    #: Why the question does not apply, and what to log so that it does.
    unjudged: str = "nothing in the log to judge"
    #: Findings that answer the question too, short of `finding` (a warning: slow, not
    #: yet failed; open, not yet stale).
    related: tuple[FindingId, ...] = ()
    children: list[Node] = field(default_factory=list)
    status: Status = Status.NOT_APPLICABLE
    findings: list[Finding] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "question": self.question,
            "finding": self.finding.value if self.finding else None,
            "status": self.status.value,
            "count": len(self.findings),
            "not_applicable": self.unjudged if self.status is Status.NOT_APPLICABLE else None,
            "children": [c.to_json() for c in self.children],
        }


def _saw_flushes(a: Analyzer) -> bool:
    return a.stats.flushes > 0 or a.stats.scheduled > 0


def _registry_question() -> Node:
    """A fleet's one stream per session rests on the shared registry: is it reachable?"""
    return Node(
        "Does the shared registry answer (no registry_unavailable)?",
        FindingId.REGISTRY_UNAVAILABLE,
        lambda a: a.shared_registry,
        "no server_start names a shared registry (registry=redis://…)",
    )


def build_tree(*, fleet: bool = False) -> Node:
    """The tree's troubleshooting questions, in their order. A fleet's log (its servers
    share a registry) adds the registry's question, first under "One stream per
    session?": while the registry is down no prompt gets a stream at all."""
    per_session = [
        Node(
            "No two streams of a session emitting at once?",
            FindingId.CONCURRENT_STREAMS,
            lambda a: a.stats.sessioned_streams > 0,
            "no stream_start names its session: log session=… in stream_start",
        ),
        Node(
            "Do cancelled streams stop?",
            FindingId.CANCEL_IGNORED,
            lambda a: a.stats.cancels > 0,
        ),
        Node(
            "Does the previous stream clean up within the cancel wait?",
            FindingId.CANCEL_TIMEOUTS,
            lambda a: a.stats.cancel_waits > 0,
            related=(FindingId.SLOW_CANCELS,),
        ),
    ]
    if fleet:
        per_session.insert(0, _registry_question())
    return Node(
        "Is the streaming lifecycle healthy?",
        children=[
            Node(
                "Server still hanging?",
                children=[
                    Node(
                        "Is the event loop running (no loop_blocked)?",
                        FindingId.LOOP_BLOCKED,
                        lambda a: a.stats.watchdog_lines > 0,
                    ),
                    Node(
                        "Does every flush that began finish?",
                        FindingId.FLUSH_STUCK,
                        _saw_flushes,
                        "no flush lines (flush, or flush_start and flush_done) in this log",
                    ),
                    Node(
                        "Does every stream reach stream_end?",
                        FindingId.STREAM_NOT_ENDED,
                        lambda a: a.stats.streams > 0,
                        related=(FindingId.STREAMS_OPEN,),
                    ),
                ],
            ),
            Node("One stream per session?", children=per_session),
            Node(
                "Cleanup working?",
                children=[
                    Node(
                        "stream_end has cleanup_done=True and buffers cleaned?",
                        FindingId.CLEANUP_INCOMPLETE,
                        lambda a: sum(a.stats.ended.values()) > 0 and a.cleanup_applies,
                        CLEANUP_UNJUDGED,
                    ),
                    Node(
                        "Are pending flush tasks cancelled at cleanup?",
                        FindingId.FLUSH_TASK_LEAK,
                        lambda a: a.stats.scheduled > 0,
                        "no flush_scheduled lines: only a log that records each scheduled "
                        "flush (older jarvis servers' three flush lines) can show a "
                        "pending one left behind",
                    ),
                ],
            ),
            Node(
                "Tokens batching?",
                children=[
                    Node(
                        "Flushes scheduled and carrying several tokens?",
                        FindingId.NO_BATCHING,
                        lambda a: a.stats.flushes >= NO_BATCHING_MIN_FLUSHES,
                    ),
                ],
            ),
        ],
    )


def evaluate(node: Node, analyzer: Analyzer, findings: list[Finding]) -> Status:
    """Set every node's status; a failed child turns its parent red."""
    if node.children:
        statuses = [evaluate(child, analyzer, findings) for child in node.children]
        if Status.FAIL in statuses:
            node.status = Status.FAIL
        elif Status.WARN in statuses:
            node.status = Status.WARN
        elif Status.PASS in statuses:
            node.status = Status.PASS
        else:
            node.status = Status.NOT_APPLICABLE
        return node.status
    node.findings = [f for f in findings if f.id is node.finding or f.id in node.related]
    if node.findings:
        worst = max(f.severity for f in node.findings)
        node.status = Status.FAIL if worst >= Severity.ERROR else Status.WARN
    elif node.applies(analyzer):
        node.status = Status.PASS
    else:
        node.status = Status.NOT_APPLICABLE
    return node.status


def leaves(node: Node) -> list[Node]:
    if not node.children:
        return [node]
    return [leaf for child in node.children for leaf in leaves(child)]


def diagnosis_path(node: Node) -> list[str]:
    """The questions from the root down to the first failing leaf (the diagnosis)."""
    if node.status not in (Status.FAIL, Status.WARN):
        return []
    for child in node.children:
        below = diagnosis_path(child)
        if below and child.status == node.status:
            return [node.question, *below]
    for child in node.children:
        below = diagnosis_path(child)
        if below:
            return [node.question, *below]
    return [node.question]
