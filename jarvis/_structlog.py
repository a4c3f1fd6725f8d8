"""jarvis's events as structlog fields: a processor for structlog's stdlib bridge.

A guard logs each event as a record of the `jarvis.stream` logger whose message is
logfmt (`event=stream_end trace=… cleanup_done=True`); through structlog's
`ProcessorFormatter` that string becomes the event dict's `event`, and a JSON
renderer writes `{"event": "event=stream_end … cleanup_done=True"}`. `structlog_fields`
puts the record's own event and fields (`record.jarvis_event`, `jarvis_fields`) in
the event dict instead, so the line says `{"event": "stream_end", "trace": …,
"cleanup_done": true}`. It is a plain callable: structlog is not imported here.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["structlog_fields"]


def structlog_fields(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: for a jarvis record (`event_dict["_record"]`, which
    `ProcessorFormatter` sets), `event` becomes the event name and the event's fields
    join the dict (over any of the same name); any other event passes as it came.

    Put it in `ProcessorFormatter(foreign_pre_chain=[...])`, or in its `processors`
    before `ProcessorFormatter.remove_processors_meta` (which drops `_record`).
    """
    record = event_dict.get("_record")
    event = getattr(record, "jarvis_event", None)
    fields = getattr(record, "jarvis_fields", None)
    if isinstance(event, str) and isinstance(fields, Mapping):
        event_dict["event"] = event
        event_dict.update(fields)
    return event_dict
