"""The browser chat page: static files shipped in the package, served at `/` and `/static/`.

No build step and nothing from the network: `static/` holds the page as it is
served (docs/browser.md). Only the files named here are served, with fixed types.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import Response

#: Every file the page is made of, and its content type (never guessed from the system).
PAGE_FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "chat.js": "text/javascript; charset=utf-8",
    "chat.css": "text/css; charset=utf-8",
}
# The page changes only with the package: a browser revalidates rather than keep an old one.
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def page_file(name: str) -> bytes:
    """One of `PAGE_FILES`, read from the installed package (a wheel holds them)."""
    return resources.files(__package__).joinpath("static", name).read_bytes()


def add_page_routes(app: FastAPI) -> None:
    """`GET /` is the chat page; `GET /static/NAME` its script and style.

    The files are read here, once, when the app is built: never on the event loop.
    """
    body = {name: page_file(name) for name in PAGE_FILES}

    def file_response(name: str) -> Response:
        return Response(body[name], media_type=PAGE_FILES[name], headers=_HEADERS)

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return file_response("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in body:
            raise HTTPException(404, "Not Found")
        return file_response(name)
