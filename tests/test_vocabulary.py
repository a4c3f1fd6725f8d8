"""The log vocabulary is one contract: code, doc page and writers agree."""

from __future__ import annotations

import ast
from pathlib import Path

from jarvis.vocabulary import EVENTS, Event, render_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_doc_page_is_generated_from_the_code() -> None:
    """docs/log-events.md equals render_markdown(); regenerate it when this fails."""
    page = (ROOT / "docs" / "log-events.md").read_text(encoding="utf-8")
    assert page == render_markdown(), (
        "docs/log-events.md is stale: python -m jarvis.vocabulary > docs/log-events.md"
    )


def test_every_event_has_a_spec_and_the_original_names_are_present() -> None:
    """Each Event has a spec; every name the original server logged is defined."""
    assert set(EVENTS) == set(Event)
    original = {
        "stream_start", "stream_cancelled", "prev_stream_finished_cleanly",
        "prev_stream_timeout_on_cancel", "stream_end", "flush_scheduled", "flush_start",
        "flush_done", "flush_cancelled", "flush_immediate", "flush_on_end", "flush_on_cleanup",
        "cleanup_flush_task", "cleanup_buffer", "event_buffers_cleaned",
    }  # fmt: skip
    assert original <= {e.value for e in Event}
    assert EVENTS[Event.STREAM_END].fields[-1] == "cleanup_done"


def test_every_emit_in_the_package_passes_exactly_the_vocabulary_fields() -> None:
    """Static check over jarvis/: each `.emit(Event.X, ...)` uses X's fields in order."""
    checked = 0
    for path in (ROOT / "jarvis").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            method = getattr(node.func, "attr", "") if isinstance(node, ast.Call) else ""
            if method not in ("emit", "bind"):
                continue
            first = node.args[0] if node.args else None
            if not (
                isinstance(first, ast.Attribute)
                and isinstance(first.value, ast.Name)
                and first.value.id == "Event"
            ):
                continue  # e.g. the watchdog's `emit(report.event, **fields)`
            event = Event[first.attr]
            if any(k.arg is None for k in node.keywords):
                continue  # **fields: checked at run time by RecordingLog in the tests
            keys = tuple(k.arg for k in node.keywords)
            expected = EVENTS[event].fields
            if method == "bind":  # fixed leading fields: a prefix of the vocabulary's
                expected = expected[: len(keys)]
            assert keys == expected, f"{path.name}:{node.lineno} {event}: {keys}"
            checked += 1
    assert checked >= 20


def test_bound_fast_path_writes_exactly_what_emit_writes(tmp_path: Path) -> None:
    """EventLog.bind (the flush hot path) produces the same bytes as emit, clock fixed."""
    from jarvis.eventlog import EventLog

    path = tmp_path / "x.log"
    log = EventLog(path, wall_clock=lambda: 1795317987.25)
    log.emit(Event.FLUSH_DONE, request_id="chatcmpl-1", tokens_sent=3, size=17)
    log.bind(Event.FLUSH_DONE, request_id="chatcmpl-1")(3, 17)
    log.emit(Event.FLUSH_START, request_id="we ird", size=4)
    log.bind(Event.FLUSH_START, request_id="we ird")(4)
    log.close()
    first, second, third, fourth = path.read_text().splitlines()
    assert first == second
    assert third == fourth
    assert 'request_id="we ird"' in third


def test_no_retired_event_is_written_by_the_package() -> None:
    """A retired event (an older server's three flush lines, and what folded into the one
    `flush` line) stays readable but nothing in jarvis/ emits or binds it."""
    retired = {spec.name.name for spec in EVENTS.values() if spec.retired}
    assert {"FLUSH_SCHEDULED", "FLUSH_START", "FLUSH_DONE", "CLEANUP_BUFFER"} <= retired
    for path in (ROOT / "jarvis").rglob("*.py"):
        if path.name == "vocabulary.py":
            continue
        text = path.read_text(encoding="utf-8")
        for name in retired:
            assert f"Event.{name}" not in text, (path, name)
