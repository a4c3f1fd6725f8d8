"""One chat request, built once and sent by httpx or written byte for byte on a raw socket."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode


@dataclass(slots=True)
class ChatRequest:
    """Method, path, headers, query and JSON body of one streaming chat request."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    method: str = "POST"

    @property
    def target(self) -> str:
        """The request target: path plus query string."""
        return f"{self.path}?{urlencode(self.params)}" if self.params else self.path

    def all_headers(self) -> dict[str, str]:
        """Headers with the cookies folded into one `Cookie` header."""
        headers = dict(self.headers)
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def payload(self) -> bytes:
        return json.dumps(self.body).encode()
