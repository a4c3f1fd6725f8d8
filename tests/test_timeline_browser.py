"""The timeline page in a real headless Chromium (Debian's, via Playwright): it draws
without a console error or a single request beyond its own file, and its findings,
search and zoom work. Never skipped: a missing browser is an error (tests/browser.py).

The screenshot in docs/timeline.md is made here (JARVIS_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jarvis_cli.exit_codes import ExitCode

from .browser import open_browser, screenshot, screenshot_path
from .logfixtures import LogBuilder

#: Every test here starts real processes (servers, the CLI, a browser): the e2e lane.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]

#: The highlight colour of a picked stream (timeline.js), as canvas pixels read it.
PICK_RGB = (245, 158, 11)


def hand_built_log() -> LogBuilder:
    """Four sessions: a healthy supersede, an overlap, a stream that never ends, and a
    blocked loop across them."""
    log = LogBuilder().emit("server_start", version="0", pid=1, cancel_wait_ms=2000)
    log.start(1, "alpha").flush(1).start(2, "alpha").cancel(1, "alpha")
    log.cleanup(1, "alpha", reason="superseded")
    log.emit("prev_stream_finished_cleanly", session="alpha", trace="t2", prev_trace="t1")
    log.flush(2).cleanup(2, "alpha")
    log.at(0.5).start(3, "beta").flush(3).start(4, "beta").flush(4).flush(3)
    log.at(0.3).cleanup(3, "beta").cleanup(4, "beta")
    log.start(5, "gamma").flush(5)
    log.at(0.2).emit("loop_blocked", level="error", lag_ms=300, stack="app.py:9:handler")
    log.at(0.1).emit("loop_recovered", blocked_ms=400)
    log.start(6, "delta").flush(6).cleanup(6, "delta")
    return log.at(40).emit("loop_lag", lag_ms=1, max_lag_ms=2, active_streams=1)


def draw(tmp_path: Path, log_text: str) -> Path:
    log = tmp_path / "system.log"
    log.write_text(log_text, encoding="utf-8")
    out = tmp_path / "timeline.html"
    proc = subprocess.run(
        [sys.executable, "-m", "jarvis_cli", "diagnose", str(log), "--html", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == ExitCode.FAILURE, proc.stdout + proc.stderr
    return out


def picked_pixels(page) -> int:  # type: ignore[no-untyped-def]
    """How many canvas pixels have the highlight colour."""
    return int(
        page.evaluate(
            """([r, g, b]) => {
                const c = document.getElementById("canvas");
                const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
                let n = 0;
                const near = (i) => Math.abs(d[i] - r) < 6 && Math.abs(d[i + 1] - g) < 6
                    && Math.abs(d[i + 2] - b) < 6;
                for (let i = 0; i < d.length; i += 4) if (near(i)) n++;
                return n;
            }""",
            list(PICK_RGB),
        )
    )


def view_range(page) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    element = page.get_by_test_id("range")
    return float(element.get_attribute("data-a")), float(element.get_attribute("data-b"))


@pytest.mark.timeout(60)
def test_findings_search_and_zoom_work_in_chromium(tmp_path: Path) -> None:
    page_file = draw(tmp_path, hand_built_log().text())
    with open_browser(width=1280, height=720) as tab:
        page = tab.page
        page.goto(page_file.as_uri())
        page.wait_for_selector("body[data-ready='1']")
        assert page.get_by_test_id("verdict").inner_text() == "unhealthy"
        findings = page.get_by_test_id("finding")
        texts = findings.all_inner_texts()
        assert any("concurrent_streams" in t for t in texts), texts
        assert any("loop_blocked" in t for t in texts), texts
        assert picked_pixels(page) == 0

        # A finding: its evidence lines listed, its streams highlighted, the view on them.
        whole = view_range(page)
        overlap = next(i for i, t in enumerate(texts) if "concurrent_streams" in t)
        findings.nth(overlap).click()
        evidence = page.get_by_test_id("evidence")
        assert evidence.count() >= 2
        assert "event=stream_start" in evidence.first.inner_text()
        assert "beta" in page.get_by_test_id("details").inner_text()
        zoomed = view_range(page)
        assert zoomed[1] - zoomed[0] < (whole[1] - whole[0]) / 2
        assert picked_pixels(page) > 50

        # Zoom buttons halve and double the range shown.
        page.get_by_test_id("fit").click()
        a, b = view_range(page)
        page.get_by_test_id("zoom-in").click()
        a2, b2 = view_range(page)
        assert (b2 - a2) == pytest.approx((b - a) / 2, rel=0.02)
        page.get_by_test_id("zoom-out").click()
        assert view_range(page)[1] - view_range(page)[0] == pytest.approx(b - a, rel=0.02)

        # Search by session, then by trace: only matching lanes stay.
        search = page.get_by_test_id("search")
        search.fill("gam")
        assert page.get_by_test_id("matches").get_attribute("data-lanes") == "1"
        search.fill("t4")
        assert page.get_by_test_id("matches").inner_text().startswith("1 of 4 lanes")
        search.fill("")
        assert page.get_by_test_id("matches").get_attribute("data-lanes") == "4"

        # Dragging pans the view (same width, moved).
        box = page.get_by_test_id("canvas").bounding_box()
        assert box is not None
        before = view_range(page)
        page.mouse.move(box["x"] + 600, box["y"] + 100)
        page.mouse.down()
        page.mouse.move(box["x"] + 400, box["y"] + 100, steps=4)
        page.mouse.up()
        after = view_range(page)
        assert after[0] > before[0]
        assert after[1] - after[0] == pytest.approx(before[1] - before[0], rel=0.01)

        assert tab.errors == []
        assert tab.requests == [page_file.as_uri()], "the page loaded something else"


@pytest.mark.timeout(90)
def test_a_real_runs_timeline_draws_cleanly_and_is_the_docs_screenshot(tmp_path: Path) -> None:
    """verify-hang against the embedded server with no-cancel: the page of that run opens
    without errors, and (JARVIS_UPDATE_SCREENSHOTS=1) becomes docs/images/timeline.png."""
    out = tmp_path / "run.html"
    proc = subprocess.run(
        [sys.executable, "-m", "jarvis_cli", "verify-hang", "--fault", "no-cancel",
         "--scenario", "overlap", "--scenario", "disconnect", "--html", str(out)],
        capture_output=True, text=True, timeout=80, check=False,
    )  # fmt: skip
    assert proc.returncode == ExitCode.FAILURE, proc.stdout + proc.stderr
    with open_browser(width=1400, height=640) as tab:
        page = tab.page
        page.goto(out.as_uri())
        page.wait_for_selector("body[data-ready='1']")
        page.get_by_test_id("finding").first.click()
        assert page.get_by_test_id("evidence").count() >= 2
        assert picked_pixels(page) > 50
        shot = screenshot(page, screenshot_path("timeline.png", tmp_path), full_page=False)
        assert shot.stat().st_size > 10_000
        assert tab.errors == []
        assert tab.requests == [out.as_uri()]


@pytest.mark.timeout(60)
def test_healthy_and_nearly_empty_logs_draw_without_an_error(tmp_path: Path) -> None:
    """The edges: a healthy log (no findings: the panel says so), and a log with no
    stream at all (one server_start): both pages draw, with no console error."""
    from .logfixtures import healthy_supersede

    pages = []
    for name, text, code in (
        ("healthy", healthy_supersede().text(), ExitCode.OK),
        ("empty", LogBuilder().emit("server_start", version="0", pid=1).text(), ExitCode.OK),
    ):
        log = tmp_path / f"{name}.log"
        log.write_text(text, encoding="utf-8")
        out = tmp_path / f"{name}.html"
        proc = subprocess.run(
            [sys.executable, "-m", "jarvis_cli", "diagnose", str(log), "--html", str(out)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == code, proc.stdout + proc.stderr
        pages.append(out)
    with open_browser(width=1200, height=600) as tab:
        page = tab.page
        page.goto(pages[0].as_uri())
        page.wait_for_selector("body[data-ready='1']")
        assert page.get_by_test_id("verdict").inner_text() == "healthy"
        assert "No findings" in page.get_by_test_id("findings").inner_text()
        page.get_by_test_id("zoom-in").click()
        page.goto(pages[1].as_uri())
        page.wait_for_selector("body[data-ready='1']")
        page.get_by_test_id("search").fill("nothing")
        assert page.get_by_test_id("matches").get_attribute("data-lanes") == "0"
        assert tab.errors == []
