"""What jarvis in front of a real engine adds to the first token: llama.cpp direct, against
`jarvis serve --upstream` and `examples/llamacpp_proxy.py` in front of the same engine.

The three take turns (direct, serve, example, direct, ...), one request at a time, so the
engine's speed drift hits all three alike; each request is a short prompt in a session of
its own (nothing to supersede), and TTFT is from sending the request to the first byte of
content. Also: how long after a supersede the engine was down to the new answer alone.

    .venv/bin/python benchmarks/engine_ttft.py [--rounds 40] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _report import percentile, table, write_json

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # after any commit export on PYTHONPATH (run_at_commit.sh)

from tests import processes  # noqa: E402

PROMPTS = ("Name a colour.", "Name a fruit.", "Name a river.", "Name a planet.")


def ttft(client: httpx.Client, url: str, prompt: str, session: str) -> float:
    """Seconds from sending a streamed chat request to its first content chunk."""
    body = {"messages": [{"role": "user", "content": prompt}], "stream": True, "max_tokens": 8}
    start = time.perf_counter()
    with client.stream(
        "POST", f"{url}/v1/chat/completions", json=body, headers={"x-session-id": session}
    ) as response:
        first = None
        seen = []
        for line in response.iter_lines():
            seen.append(line[:200])  # read to the end: the engine's slot is then free
            if first is None and line.startswith("data: {") and '"content":"' in line:
                first = time.perf_counter() - start
    if first is None:
        raise RuntimeError(f"{url}: no content in the answer: {seen[:6]}")
    return first


def busy(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith("llamacpp:requests_processing "):
            return float(line.split()[1])
    raise RuntimeError("no llamacpp:requests_processing")


def freed_after_supersede(client: httpx.Client, proxy: str, engine: str, session: str) -> float:
    """Seconds from B's request to the engine processing only B, A superseded."""
    url = f"{proxy}/v1/chat/completions"
    long = {"messages": [{"role": "user", "content": "Write a long essay about the sea."}],
            "stream": True, "max_tokens": 300}  # fmt: skip
    short = {"messages": [{"role": "user", "content": "Name a colour."}], "stream": True,
             "max_tokens": 8}  # fmt: skip
    headers = {"x-session-id": session}
    with (
        httpx.Client(timeout=60) as other,
        other.stream("POST", url, json=long, headers=headers) as a,
    ):
        lines = a.iter_lines()
        next(line for line in lines if '"content":"' in line)
        sent = time.perf_counter()
        with client.stream("POST", url, json=short, headers=headers) as b:
            while busy(engine) > 1:
                if time.perf_counter() - sent > 10:
                    raise RuntimeError("the superseded answer was still decoding after 10 s")
            freed = time.perf_counter() - sent
            for _ in b.iter_lines():
                pass
        for _ in lines:
            pass
    return freed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="requests to each server")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        engine = processes.start(
            [sys.executable, "-m", "tests.engines.llamacpp", "--port", "0"],
            name="llamacpp", workdir=work, cwd=REPO, ready="/health", deadline_s=60,
            die_with_parent=True,
        )  # fmt: skip
        started = [engine]
        try:
            serve = processes.start(
                [sys.executable, "-m", "jarvis_cli", "serve", "--host", processes.HOST,
                 "--port", "0", "--log-file", str(work / "serve.log"), "--upstream", engine.url],
                name="serve", workdir=work, die_with_parent=True,
            )  # fmt: skip
            started.append(serve)
            example = processes.start(
                [sys.executable, "-m", "uvicorn", "--app-dir", str(REPO / "examples"),
                 "llamacpp_proxy:app", "--host", processes.HOST, "--port", "0"],
                name="example", workdir=work, ready=None, die_with_parent=True,
                env={"LLAMA_URL": engine.url, "APP_LOG_FILE": str(work / "example.log")},
            )  # fmt: skip
            started.append(example)
            servers = {"direct": engine.url, "jarvis serve": serve.url, "example": example.url}
            times: dict[str, list[float]] = {name: [] for name in servers}
            freed: dict[str, list[float]] = {"jarvis serve": [], "example": []}
            with httpx.Client(timeout=60) as client:
                for name, url in servers.items():  # warm-up: connections, the prompt cache
                    ttft(client, url, PROMPTS[0], f"warm-{len(name)}")
                for i in range(args.rounds):
                    for name, url in servers.items():
                        times[name].append(ttft(client, url, PROMPTS[i % len(PROMPTS)], f"t{i}"))
                for i in range(max(3, args.rounds // 8)):
                    for name, samples in freed.items():
                        samples.append(
                            freed_after_supersede(client, servers[name], engine.url, f"s{i}")
                        )
        finally:
            for server in reversed(started):
                server.stop(timeout=5)
    direct = times["direct"]
    rows = []
    for name, values in times.items():
        p50, p99 = percentile(values, 50) * 1000, percentile(values, 99) * 1000
        added50 = p50 - percentile(direct, 50) * 1000
        added99 = p99 - percentile(direct, 99) * 1000
        rows.append([name, len(values), p50, p99, added50, added99])
    print(table(["server", "n", "TTFT p50 ms", "TTFT p99 ms", "added p50", "added p99"], rows))
    print()
    print(table(
        ["proxy", "supersedes", "engine down to B alone: p50 ms", "max ms"],
        [[n, len(v), percentile(v, 50) * 1000, max(v) * 1000] for n, v in freed.items()],
    ))  # fmt: skip
    write_json(args.json, "engine_ttft", {"ttft_s": times, "freed_after_supersede_s": freed})
    print(json.dumps({"rounds": args.rounds}))


if __name__ == "__main__":
    main()
