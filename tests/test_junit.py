"""The one JUnit writer (`jarvis_cli/junit.py`): well-formed XML whatever the logs put in it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.junit import clean, write
from jarvis_cli.main import main
from jarvis_cli.verify.plan import Plan
from jarvis_cli.verify.report import Report, write_junit
from jarvis_cli.verify.results import ScenarioResult, Status

from .logfixtures import LogBuilder

#: Every kind of character XML 1.0 forbids, among ones it allows.
HOSTILE = "a\x1b[31mred\x1b[0m \x00nul \x07bell \x0bvt \x7f \ud800lone \ufffe\uffff\ttab\r\n✔ 🙂"


def test_clean_escapes_exactly_what_xml_forbids() -> None:
    """ESC, NUL, BEL, VT, a lone surrogate, U+FFFE/U+FFFF become visible escapes; tab,
    CR, LF, DEL and any other character (emoji included) stay as they are."""
    assert clean(HOSTILE) == (
        "a\\x1b[31mred\\x1b[0m \\x00nul \\x07bell \\x0bvt \x7f \\ud800lone \\ufffe\\uffff"
        "\ttab\r\n✔ 🙂"
    )


def test_write_gives_xml_that_parses_with_the_text_kept(tmp_path: Path) -> None:
    """Names, attributes and text full of forbidden characters: the file parses, and
    what was readable reads the same."""
    suite = ET.Element("testsuite", name=HOSTILE)
    case = ET.SubElement(suite, "testcase", name="c\x1b")
    ET.SubElement(case, "failure", message=HOSTILE).text = HOSTILE
    path = tmp_path / "deep" / "junit.xml"
    write(suite, path)
    root = ET.parse(path).getroot()
    failure = root.find("testcase/failure")
    assert failure is not None
    assert failure.text is not None and "\\x1b[31mred" in failure.text
    assert "✔ 🙂" in failure.text
    assert root.find("testcase") is not None
    assert root.find("testcase").get("name") == "c\\x1b"  # type: ignore[union-attr]


def test_verify_hang_junit_with_control_characters_in_evidence_parses(tmp_path: Path) -> None:
    """A scenario whose evidence quotes a server's raw bytes (ESC, NUL, surrogates):
    verify-hang's --junit file is still XML a CI server can read."""
    failed = ScenarioResult("overlap", Status.FAIL, HOSTILE, evidence=[HOSTILE, "plain"])
    run = SimpleNamespace(results=[failed], seconds=1.0)  # all write_junit reads of a run
    path = tmp_path / "verify.xml"
    write_junit(Report(Plan(), run), path)  # type: ignore[arg-type]
    failure = ET.parse(path).getroot().find("testcase/failure")
    assert failure is not None
    assert failure.text is not None and failure.text.endswith("plain")


@pytest.mark.parametrize("raw", [b"\x1b[2K", b"\x00\x07\x0b", b"\xed\xa0\x80\xef\xbf\xbe"])
def test_diagnose_junit_quoting_a_hostile_log_line_parses(tmp_path: Path, raw: bytes) -> None:
    """A log line holding control bytes is the evidence of a failing testcase: the
    JUnit file parses and names the finding."""
    log = LogBuilder().start(1, "s").flush(1).start(2, "s").flush(2)
    text = log.text().encode()
    text = text.replace(b"model=m", b"model=m " + raw, 1)
    log_path = tmp_path / "system.log"
    log_path.write_bytes(text + LogBuilder().cleanup(1, "s").cleanup(2, "s").text().encode())
    junit = tmp_path / "diagnose.xml"
    assert main(["diagnose", str(log_path), "--junit", str(junit)]) == ExitCode.FAILURE
    suite = ET.parse(junit).getroot()
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["concurrent_streams"]
