"""Every SSE reader in the project gives the same events for one shared set of vectors
(tests/sse_vectors.py): the byte decoder of `jarvis_cli.chatapi`, httpx-sse over a streamed
httpx response, and the locust user's reading path (`loadtests/sse_reader.py`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from httpx_sse import aconnect_sse

from jarvis_cli.chatapi import SSEDecoder

from .sse_vectors import VECTORS, Event, Vector, dispatched

READER = Path(__file__).parents[1] / "loadtests" / "sse_reader.py"


def _load_reader() -> ModuleType:
    """The locust user's reading path, loaded by file: `loadtests/` is not a package, and
    the locustfile itself cannot be imported here (locust monkey-patches with gevent)."""
    spec = importlib.util.spec_from_file_location("loadtests_sse_reader", READER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ids(vector: Vector) -> str:
    return vector.name


def by_decoder(vector: Vector) -> list[Event]:
    decoder = SSEDecoder()
    found = [e for chunk in vector.chunks for e in decoder.feed(chunk)]
    found += decoder.close()
    return [(e.event, e.data, e.id) for e in found]


class _Chunks(httpx.AsyncByteStream):
    """A response body handed over in the vector's reads, one at a time."""

    def __init__(self, chunks: tuple[bytes, ...]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


async def by_httpx_sse(vector: Vector) -> list[Event]:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, headers=headers, stream=_Chunks(vector.chunks))

    transport = httpx.MockTransport(handler)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://peer") as client,
        aconnect_sse(client, "GET", "/events") as source,
    ):
        return [(e.event, e.data, e.id) for e in [e async for e in source.aiter_sse()]]


def by_locust_reader(vector: Vector) -> list[Event]:
    # A socket read is never empty while the body goes on: b"" is the end.
    reads: Iterator[bytes] = iter([c for c in vector.chunks if c])
    found = _load_reader().events(lambda: next(reads, b""))
    return [(e.event, e.data, e.id) for e in found]


@pytest.mark.parametrize("vector", VECTORS, ids=_ids)
def test_the_byte_decoder_dispatches_what_the_spec_says(vector: Vector) -> None:
    """SSEDecoder, fed the vector's reads then closed, dispatches exactly its events."""
    assert by_decoder(vector) == list(vector.events)


@pytest.mark.parametrize("vector", VECTORS, ids=_ids)
async def test_httpx_sse_agrees_with_the_byte_decoder(vector: Vector) -> None:
    """httpx-sse over a body streamed in the same reads gives the same events (blank
    dispatches filtered on both sides: httpx-sse sends one per blank line after an id)."""
    assert dispatched(await by_httpx_sse(vector)) == dispatched(by_decoder(vector))


@pytest.mark.parametrize("vector", VECTORS, ids=_ids)
def test_the_locust_reader_agrees_with_the_byte_decoder(vector: Vector) -> None:
    """The locust user's reading path gives exactly the vector's events (it is the
    decoder behind a read loop, so no filter is needed)."""
    assert by_locust_reader(vector) == list(vector.events)


def test_the_vectors_cover_what_the_spec_reader_must_survive() -> None:
    """The set keeps its awkward cases: CRLF split across reads, the characters other line
    splitters take for line ends, multi-line data, event and id fields, comments and an
    unterminated trailing event."""
    names = {v.name for v in VECTORS}
    needed = {
        "crlf-split-between-reads", "separators-inside-data", "multi-line-data",
        "event-and-id-fields", "comments", "trailing-event-without-blank-line",
    }  # fmt: skip
    assert needed <= names
