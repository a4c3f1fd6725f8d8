"""The library installs alone: the wheel, with its core dependencies only, in a fresh venv.

A user who wants `StreamGuard` runs `pip install jarvis-streamkit` and brings their own
server: this builds the wheel, installs it with nothing but its core dependencies and
uvicorn (versions from the lock, so the test does not drift), and streams and
supersedes through `examples/starlette_app.py` under that venv's uvicorn.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from . import processes

#: One worker builds and installs the wheel once for the module.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), pytest.mark.xdist_group("wheel")]

ROOT = Path(__file__).resolve().parent.parent
#: What a copy of the checkout leaves out to build the wheel from: at the top, and anywhere.
TOP_ONLY = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "logs", "reports")
ANYWHERE = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so", ".*_cache")


def not_sources(folder: str, names: list[str]) -> set[str]:
    """`copytree`'s ignore: the checkout's own state, never a package folder (such as
    jarvis_cli/logs) that happens to share a top-level folder's name."""
    skipped = set(ANYWHERE(folder, names))
    if Path(folder) == ROOT:
        skipped |= set(TOP_ONLY(folder, names))
    return skipped


#: What only the extras bring: none may be installed, or imported by `import jarvis`.
EXTRAS_ONLY = ("fastapi", "typer", "rich", "httpx", "httpx_sse", "redis", "locust")
#: Installed with the user's uvicorn, but `import jarvis` must not load it either.
NOT_IMPORTED = (*EXTRAS_ONLY, "click", "prometheus_client")


def pip(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """The dev venv's pip (the locked one), run for us; a failure shows what pip said."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"pip {' '.join(args[:2])} failed:\n{done.stderr[-3000:]}"
    return done


def lock_pins(path: Path) -> str:
    """`name==version ; markers` of each locked package: the lock as pip constraints."""
    pins = [
        line.rstrip(" \\")
        for line in path.read_text().splitlines()
        if re.match(r"^[A-Za-z0-9][\w.-]*==", line)
    ]
    return "\n".join(pins) + "\n"


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel, its core dependencies and uvicorn: its python."""
    work = tmp_path_factory.mktemp("wheel")
    # Built from a copy: pip builds in the source tree (build/, *.egg-info), and the
    # checkout is not this test's to write in.
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=not_sources)
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(source))
    (wheel,) = (work / "dist").glob("jarvis_streamkit-*.whl")
    venv = work / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    python = venv / "bin" / "python"
    constraints = work / "constraints.txt"
    constraints.write_text(lock_pins(ROOT / "requirements" / "dev.txt"))
    pip("--python", str(python), "install", "-q", "-c", str(constraints), str(wheel), "uvicorn")
    return python


def test_the_core_install_holds_no_extra_and_import_jarvis_loads_none(core_venv: Path) -> None:
    """Only the core dependencies (and the user's uvicorn) are installed, and `import
    jarvis` loads none of the extras' modules."""
    listed = json.loads(pip("--python", str(core_venv), "list", "--format=json").stdout)
    names = {p["name"].lower().replace("_", "-") for p in listed}
    assert {"jarvis-streamkit", "starlette", "prometheus-client", "uvicorn"} <= names
    assert not names & {m.replace("_", "-") for m in EXTRAS_ONLY}, names
    probe = subprocess.run(
        [str(core_venv), "-c",
         f"import sys, jarvis; print([m for m in {NOT_IMPORTED!r} if m in sys.modules])"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == "[]"


def test_the_jarvis_command_without_the_cli_extra_names_it(core_venv: Path) -> None:
    """pip installs the `jarvis` script with the core too: it says which extra to add."""
    proc = subprocess.run(
        [str(core_venv.parent / "jarvis"), "diagnose", "x.log"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "pip install 'jarvis-streamkit[cli]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_redis_registry_without_the_fleet_extra_names_it(core_venv: Path) -> None:
    """`StreamGuard(registry="redis://...")` on the core alone: a ConfigError that names the
    extra, not a ModuleNotFoundError from deep inside."""
    code = (
        "from jarvis import ConfigError, StreamGuard\n"
        "try:\n    StreamGuard(registry='redis://127.0.0.1:1/0')\n"
        "except ConfigError as exc:\n    print(exc)\n"
    )
    probe = subprocess.run(
        [str(core_venv), "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert "pip install 'jarvis-streamkit[fleet]'" in probe.stdout, probe.stdout + probe.stderr


def test_a_guarded_starlette_app_streams_and_supersedes_on_the_core_alone(
    core_venv: Path, tmp_path: Path
) -> None:
    """A second prompt in a session ends the first answer (superseded, then [DONE]) and
    streams its own whole answer; the guard's log shows the cancel and the wait."""
    log = tmp_path / "guard.log"
    server = processes.start(
        [str(core_venv), "-m", "uvicorn", "--app-dir", str(ROOT / "examples"),
         "starlette_app:app", "--host", processes.HOST, "--port", "0"],
        name="starlette_app", workdir=tmp_path, ready=None, env={"APP_LOG_FILE": str(log)},
    )  # fmt: skip
    try:
        url = f"{server.url}/v1/chat/completions"
        headers = {"x-session-id": "wheel-1"}
        body = {"messages": [{"role": "user", "content": "alpha beta gamma"}]}
        with (
            httpx.Client(timeout=10) as a_client,
            httpx.Client(timeout=10) as b_client,
            a_client.stream("POST", url, json=body, headers=headers) as a,
        ):
            a_lines = a.iter_lines()
            first = next(line for line in a_lines if '"content"' in line)
            b = b_client.post(
                url, json={"messages": [{"role": "user", "content": "delta"}]}, headers=headers
            )
            a_rest = list(a_lines)
    finally:
        server.stop()
    a_data = [first, *(line for line in a_rest if line.startswith("data: "))]
    assert a_data[-1] == "data: [DONE]"
    assert '"end_reason":"superseded"' in a_data[-2].replace(" ", "")
    b_chunks = [json.loads(line[6:]) for line in b.text.splitlines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in b_chunks)
    assert text == "delta " * 40
    assert b.text.rstrip().endswith("data: [DONE]")
    written = log.read_text()
    assert "event=stream_cancelled" in written and "reason=superseded" in written
    assert "event=prev_stream_finished_cleanly" in written
