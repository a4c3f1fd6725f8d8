"""JUnit XML that is always well-formed, whatever the logs we quote put in it.

`jarvis verify-hang --junit` and `jarvis diagnose --junit` both write through
`write`: evidence is log text from servers we do not control, and XML 1.0 forbids
most control characters (ESC from colour codes, NUL, ...), lone surrogates and
U+FFFE/U+FFFF. `ElementTree` escapes `<&>"` but writes those as they are, and a CI
server then refuses the whole report. So every name, attribute and text is cleaned
first: each forbidden character becomes a visible escape (`\\x1b`, `\\ud800`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

__all__ = ["clean", "write"]

# Everything outside XML 1.0's Char production.
_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def clean(text: str) -> str:
    """`text` with every character XML 1.0 cannot hold replaced by a visible escape."""
    return _FORBIDDEN.sub(_escape, text)


def _clean_tree(element: ET.Element) -> None:
    for key, value in element.attrib.items():
        element.set(clean(key), clean(value))
    if element.text is not None:
        element.text = clean(element.text)
    if element.tail is not None:
        element.tail = clean(element.tail)
    for child in element:
        _clean_tree(child)


def write(suite: ET.Element, path: Path) -> None:
    """Write `suite` (a `testsuite` or `testsuites` element) to `path` as UTF-8 XML,
    cleaned of what XML forbids; the parent folder is created if needed."""
    _clean_tree(suite)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
