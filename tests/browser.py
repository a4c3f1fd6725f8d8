"""A real headless Chromium for tests: Debian's `chromium`, driven by Playwright's sync API.

`open_browser()` launches it with a fresh profile and yields a `Tab` that records console
errors, uncaught page errors and every URL requested; `screenshot()` saves a PNG. Playwright
never downloads a browser here (`playwright install` is not used): scripts/install
apt-installs `chromium`. A missing piece is an error naming scripts/install, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, ConsoleMessage, Page

ROOT = Path(__file__).resolve().parent.parent
#: Debian's browser; JARVIS_CHROMIUM points elsewhere (another Chromium build).
CHROMIUM = Path(os.environ.get("JARVIS_CHROMIUM", "/usr/bin/chromium"))
#: Headless, sandbox-less (containers run as root), and nothing that reaches for the network:
#: without these, Chromium waits on DNS lookups for its own background services.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: Set to 1 to write screenshots into docs/images (see `screenshot_path`).
UPDATE_ENV = "JARVIS_UPDATE_SCREENSHOTS"
INSTALL_HINT = (
    "run scripts/install: it apt-installs Debian's chromium and pip-installs playwright "
    "(the dev extra) into .venv"
)


class BrowserMissingError(RuntimeError):
    """Chromium or Playwright is not installed; the message says how to install them."""


@dataclass
class Tab:
    """One browser page and what it said: console errors, uncaught errors, requests."""

    context: BrowserContext
    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        """Everything the page reported as an error: console errors and uncaught ones."""
        return [*self.console_errors, *self.page_errors]

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} ({message.location.get('url', '')})")


@contextlib.contextmanager
def open_browser(*, width: int = 960, height: int = 720, timeout_s: float = 10.0) -> Iterator[Tab]:
    """Launch headless Chromium with an empty profile; closed (and the profile removed)
    on exit. Every Playwright action of the page times out after `timeout_s`."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise BrowserMissingError(f"playwright is not importable ({exc}): {INSTALL_HINT}") from exc
    if not os.access(CHROMIUM, os.X_OK):
        raise BrowserMissingError(f"no Chromium at {CHROMIUM}: {INSTALL_HINT}")
    with (
        tempfile.TemporaryDirectory(prefix="jarvis-chromium-") as profile,
        sync_playwright() as playwright,
    ):
        # A persistent context is how Playwright takes a profile directory of ours.
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": width, "height": height},
            device_scale_factor=1,
            timeout=timeout_s * 1000,
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(timeout_s * 1000)
            tab = Tab(context, page)
            page.on("console", tab._on_console)
            page.on("pageerror", lambda error: tab.page_errors.append(str(error)))
            page.on("request", lambda request: tab.requests.append(request.url))
            yield tab
        finally:
            context.close()


def screenshot(page: Page, path: Path, *, full_page: bool = True) -> Path:
    """Save what the page shows as a PNG (parents created); the path is returned."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page, animations="disabled", caret="hide")
    return path


def screenshot_path(name: str, scratch: Path) -> Path:
    """Where a test writes screenshot `name`: docs/images/ when JARVIS_UPDATE_SCREENSHOTS=1
    (to refresh the committed images), else `scratch`, so a test run leaves the tree clean."""
    if os.environ.get(UPDATE_ENV) == "1":
        return ROOT / "docs" / "images" / name
    return scratch / name
