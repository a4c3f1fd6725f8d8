"""The browser chat page as files: shipped in the package, served at `/` and `/static/`
with fixed content types, loading nothing from the network, shadowing no API route.
(How the page behaves in a real browser: tests/test_browser.py.)"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import httpx
import pytest

from jarvis.config import ServerConfig
from jarvis.eventlog import RecordingLog
from jarvis.server.app import create_app
from jarvis.server.context import ServerContext
from jarvis.server.page import PAGE_FILES

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "jarvis" / "server" / "static"


def client() -> httpx.AsyncClient:
    ctx = ServerContext.build(ServerConfig(log_file=None), log=RecordingLog())
    transport = httpx.ASGITransport(app=create_app(ctx=ctx))
    return httpx.AsyncClient(transport=transport, base_url="http://jarvis", timeout=10)


def test_every_static_file_is_served_and_listed_as_package_data() -> None:
    """What is in static/ is exactly what the page serves, and pyproject's package-data
    globs for `jarvis.server.static` match each file, so a wheel holds the page."""
    on_disk = {path.name for path in STATIC.iterdir() if path.is_file()}
    assert on_disk == set(PAGE_FILES)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["jarvis.server.static"]
    for name in on_disk:
        assert any(fnmatch.fnmatch(name, glob) for glob in globs), name


@pytest.mark.parametrize(
    ("path", "name"),
    [("/", "index.html"), ("/static/chat.js", "chat.js"), ("/static/chat.css", "chat.css")],
)
async def test_the_page_files_are_served_with_their_content_types(path: str, name: str) -> None:
    """GET / is index.html and /static/NAME its assets, byte for byte, each with its
    fixed type (never a guess from the system's mime table) and `nosniff`."""
    async with client() as http:
        response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == PAGE_FILES[name]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (STATIC / name).read_bytes()


async def test_the_page_loads_nothing_from_the_network() -> None:
    """Every `src`/`href` of the page is a path of this server (or a `data:` URL), and no
    file of the page names an http(s) URL at all: no CDN, works offline."""
    async with client() as http:
        html = (await http.get("/")).text
        assets = [(await http.get(f"/static/{n}")).text for n in PAGE_FILES if n != "index.html"]
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html)
    assert refs, "the page links its script and style"
    assert all(ref.startswith(("/", "data:")) and not ref.startswith("//") for ref in refs), refs
    for text in (html, *assets):
        assert not re.search(r"https?://", text)


async def test_the_page_shadows_no_api_route_and_unknown_files_are_404() -> None:
    """/healthz, /v1/models and /metrics answer as before; a file not in the page is the
    usual OpenAI-style 404, path tricks included."""
    async with client() as http:
        assert (await http.get("/healthz")).json()["status"] == "ok"
        assert (await http.get("/v1/models")).json()["object"] == "list"
        assert (await http.get("/metrics")).headers["content-type"].startswith("text/plain")
        for path in ("/static/nope.js", "/static/..%2Fpage.py", "/static/", "/index.html"):
            response = await http.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"
