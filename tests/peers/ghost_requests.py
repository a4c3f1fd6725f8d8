"""tests/peers/engine_gauge.py with ghost requests: the stream a client sees ends at once
(superseded, or its client gone), but the engine decodes on for nobody, so its busy gauge
stays up for `GHOST_S` (SGLang's "ghost requests", a proxy that never closes its upstream
request). Everything a client can see is correct; only the gauge tells.

    python -m tests.peers.ghost_requests --port 8001
"""

from __future__ import annotations

from ._synth import parse_args, serve
from .engine_gauge import make_app

#: How long an abandoned answer stays on the gauge: past the work-stop bound (3.5 s with
#: --url) and within the time verify-hang watches past it (the 5 s idle bound).
GHOST_S = 6.0

app = make_app(GHOST_S)


def main() -> None:
    args = parse_args(__doc__ or "")
    serve(app, args.port)


if __name__ == "__main__":
    main()
