"""The synthetic answer every peer streams, and the command line every peer takes.

Deterministic words at a fixed pace: the classic test's long prompt with 300 tokens
streams for ~1.5 s, a short one with 16 tokens for ~80 ms. No network, no model.
"""

from __future__ import annotations

import argparse
import hashlib
import socket
from typing import Any

#: Seconds between tokens.
PACE_S = 0.005
#: Tokens when a request names no max_tokens.
DEFAULT_MAX_TOKENS = 64
#: How long a new prompt waits for the stream it superseded to end.
CANCEL_WAIT_S = 2.0
MODEL = "peer-synthetic"

_WORDS = ("qubit", "lattice", "photon", "amplitude", "circuit", "gate", "error", "noise",
          "phase", "entangle", "measure", "state", "vector", "basis", "unitary", "decohere",
          "anneal", "oracle", "shor", "grover", "surface", "code", "logical")  # fmt: skip


def tokens(prompt: str, max_tokens: int | None) -> list[str]:
    """`max_tokens` words chosen by the prompt's hash, each but the first after a space."""
    count = DEFAULT_MAX_TOKENS if max_tokens is None else max(int(max_tokens), 0)
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
    words = [_WORDS[(seed + 7 * i) % len(_WORDS)] for i in range(count)]
    return [w if i == 0 else f" {w}" for i, w in enumerate(words)]


def prompt_of(body: object) -> str:
    """The last user message of an OpenAI or Anthropic body, as text ("" if none)."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        return ""
    content = messages[-1].get("content") if isinstance(messages[-1], dict) else ""
    return content if isinstance(content, str) else str(content)


def max_tokens_of(body: object) -> int | None:
    value = body.get("max_tokens") if isinstance(body, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_args(description: str) -> argparse.Namespace:
    """`--port N` (required) and `--log-file PATH`; every peer binds 127.0.0.1 only."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-file", default=None)
    return parser.parse_args()


def listen(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:`port` (0: the kernel picks one), announced on
    stdout as servers announce theirs, so a test reads the port back (tests/processes.py).
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.set_inheritable(True)  # a peer with worker processes hands it on
    print(f"peer listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    return sock


def serve(app: Any, port: int) -> None:
    """Run an ASGI peer under uvicorn on `listen(port)`, quietly, until it is stopped."""
    import uvicorn

    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listen(port)])
