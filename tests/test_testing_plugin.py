"""`jarvis_cli.testing`: verify-hang inside a user's own tests, as a function and as the
fixture of the pytest plugin the package registers (entry point `pytest11: jarvis`).

Apps are served on free 127.0.0.1 ports by the helper itself; peers run as subprocesses
through `tests.peers.running`, killed whatever the test did.
"""

from __future__ import annotations

import logging
import runpy
import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from jarvis.exceptions import ConfigError, ServerStartError
from jarvis_cli import testing
from jarvis_cli.testing import Status, averify_hang, verify_hang
from jarvis_cli.testing._server import NAME as APP_THREAD_NAME
from jarvis_cli.verify.target import SetupError

from .peers import PEERS, ROOT, running
from .peers.auth_required import API_KEY as AUTH_KEY
from .peers.auth_required import app as auth_app
from .peers.stop_done import app as correct_app

pytest_plugins = ["pytester"]

NAIVE_APP = ROOT / "examples" / "naive_app.py"


@pytest.fixture(scope="module")
def naive_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """examples/naive_app.py's `app`, loaded as its users run it (its log folder, which
    it creates on import, in a temporary directory)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("APP_LOG_FILE", str(tmp_path_factory.mktemp("naive") / "naive_app.log"))
        return runpy.run_path(str(NAIVE_APP))["app"]


def _app_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == APP_THREAD_NAME]


def _listening(url: str) -> bool:
    address = httpx.URL(url)
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((address.host, address.port or 80)) == 0


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_naive_app_fails_overlap_with_two_streams_of_one_session_at_once(
    naive_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The naive example streams a session's second prompt beside its first: verify_hang
    fails overlap with exactly that evidence, passes isolation, and explain() says both."""
    caplog.set_level(logging.INFO, logger="chat")
    report = verify_hang(naive_app, scenarios=["isolation", "overlap"], rounds=1)
    assert not report.passed
    assert report.verdict == "fail"
    statuses = {r.name: r.status for r in report.results}
    assert statuses == {"overlap": Status.FAIL, "isolation": Status.PASS}, report.explain()
    overlap = report.result("overlap")
    assert not overlap.hung
    assert overlap.evidence[0].startswith("two streams of one session emitting at once: A1 ")
    explained = report.explain()
    assert "jarvis verify-hang: FAIL at http://127.0.0.1:" in explained
    assert "  FAIL overlap: two streams of one session emitting at once" in explained
    assert "  pass isolation: " in explained
    # The app ran as written: it logged each request with the session it was sent in.
    assert any("session='vh-" in r.getMessage() for r in caplog.records)
    assert _app_threads() == []


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_fixture_from_the_installed_plugin_passes_a_correct_app_and_explains_a_failure(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh pytest process, with warnings as errors, gets the `verify_hang` fixture from
    the entry point alone: a correct app passes, and the naive one fails with the report's
    explanation as the assertion message."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # for tests.peers in the generated test
    monkeypatch.setenv("APP_LOG_FILE", str(pytester.path / "naive_app.log"))
    pytester.makeini(
        "[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        test_chat=f"""
        import runpy

        from tests.peers.stop_done import app as correct_app

        def test_correct_app(verify_hang, pytestconfig):
            assert pytestconfig.pluginmanager.get_plugin("jarvis") is not None
            report = verify_hang(correct_app, scenarios=["overlap"], rounds=2)
            assert report.passed, report.explain()

        def test_naive_app(verify_hang):
            app = runpy.run_path({str(NAIVE_APP)!r})["app"]
            report = verify_hang(app, scenarios=["overlap"], rounds=1)
            assert report.passed, report.explain()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=80)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: jarvis verify-hang: FAIL at http://127.0.0.1:*",
            "*FAIL overlap: two streams of one session emitting at once: A1 *",
        ]
    )


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_url_of_a_correct_peer_passes_every_scenario(tmp_path: Path) -> None:
    """A URL is tested where it is, as `verify-hang --url`: the stop_done peer (a process
    of its own) passes every scenario that can check it."""
    with running(PEERS["stop_done"], tmp_path) as url:
        report = verify_hang(url)
    assert report.passed, report.explain()
    assert report.result("overlap").status is Status.PASS
    assert report.to_json()["target"]["url"] == url


@pytest.mark.timeout(30)
async def test_async_variant_serves_the_app_on_the_tests_loop_and_stops_it() -> None:
    """`await averify_hang(app)` runs in an async test, and the app no longer listens when
    it returns; the blocking `verify_hang` there says to use it instead."""
    report = await averify_hang(correct_app, scenarios="overlap", rounds=2)
    assert report.passed, report.explain()
    url = report.to_json()["target"]["url"]
    assert not _listening(url)
    with pytest.raises(ConfigError, match=r"use `await averify_hang\(\.\.\.\)` instead"):
        verify_hang(correct_app)


@pytest.mark.timeout(30)
def test_app_is_stopped_even_when_the_run_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that raises still stops the app: its port is closed and its thread is gone."""
    seen: list[str] = []

    async def broken_run(plan: object, spec: Any, view: object) -> None:
        seen.append(spec.urls[0])
        assert _listening(spec.urls[0])
        raise RuntimeError("the run broke")

    monkeypatch.setattr("jarvis_cli.verify.runner.run", broken_run)
    with pytest.raises(RuntimeError, match="the run broke"):
        verify_hang(correct_app, scenarios=["overlap"])
    assert seen and not _listening(seen[0])
    assert _app_threads() == []


@pytest.mark.timeout(30)
def test_app_whose_startup_fails_raises_server_start_error() -> None:
    """An app whose lifespan startup raises is a ServerStartError, not uvicorn's SystemExit."""

    async def lifespan(app: FastAPI) -> Any:
        raise RuntimeError("no model weights")
        yield  # never reached: the yield makes this an async generator, as lifespans are

    with pytest.raises(ServerStartError, match="the app failed to start"):
        verify_hang(FastAPI(lifespan=lifespan))
    assert _app_threads() == []


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        (42, {}, r"takes an ASGI 3 app .* not an object of type int"),
        (lambda environ, start: [], {}, r"not an object of type function \(a WSGI app\?"),
        (FastAPI, {}, r"not the class FastAPI \(an instance of it\?\)"),
        ("examples.naive_app:app", {}, r"takes an http\(s\):// URL.*an import string\?"),
        ("ftp://127.0.0.1/", {}, r"takes an http\(s\):// URL, not 'ftp://127.0.0.1/'"),
        (correct_app, {"scenarios": ["overlapp"]}, r"unknown --scenario 'overlapp'; choose"),
        (correct_app, {"scenario": ["overlap"]},
         r"no option 'scenario' \(did you mean 'scenarios'\?\); the options are: api_key"),
        (correct_app, {"expect": "both"},
         r"--expect takes one of supersede, independent, reject, queue, not 'both'"),
        (correct_app, {"target": "no-such-api.toml"}, r"--target no-such-api.toml: cannot read"),
        (correct_app, {"headers": ["X-Team"]}, r"--header 'X-Team': write it as 'Name: value'"),
        (correct_app, {"faults": ["no-cancel"]}, r"--fault switches bugs on in the embedded"),
        (correct_app, {"rounds": "5"}, r"--rounds takes an integer, not '5'"),
        (correct_app, {"session_in": "nowhere"}, r"--session-in takes one of header:NAME"),
        (correct_app, {"rounds": 0}, r"--rounds must be 1\.\.100"),
    ],
    ids=[
        "int", "wsgi", "class", "import-string", "ftp", "unknown-scenario", "unknown-option",
        "expect", "target-file", "header", "fault", "rounds-type", "session-in", "rounds",
    ],
)  # fmt: skip
@pytest.mark.timeout(10)
def test_bad_input_is_a_config_error_before_anything_starts(
    target: object, options: dict[str, Any], message: str
) -> None:
    """Input that cannot work raises ConfigError with a message naming the fix (the flag
    of the command, whose options these are), before any server is started."""
    with pytest.raises(ConfigError, match=message):
        verify_hang(target, **options)
    assert _app_threads() == []


def test_public_names_are_sorted_and_importable() -> None:
    """`jarvis_cli.testing.__all__` is the promise: sorted, unique, each name defined."""
    assert testing.__all__ == sorted(testing.__all__)
    assert len(set(testing.__all__)) == len(testing.__all__)
    for name in testing.__all__:
        assert hasattr(testing, name)


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_the_guarded_example_passes_every_scenario(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """examples/guarded_app.py (the naive app plus StreamGuard) passes verify_hang, all
    scenarios: the promise of docs/adopt.md, kept the way a user keeps it in their tests."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("APP_LOG_FILE", str(tmp_path_factory.mktemp("guarded") / "app.log"))
        app = runpy.run_path(str(ROOT / "examples" / "guarded_app.py"))["app"]
    report = verify_hang(app)
    assert report.passed, report.explain()
    passed = [r.name for r in report.results if r.status is Status.PASS]
    assert {"overlap", "burst", "isolation", "disconnect"} <= set(passed), report.explain()
    assert _app_threads() == []


@pytest.mark.timeout(60)
def test_an_app_behind_an_api_key_passes_with_the_key_and_is_a_setup_error_without() -> None:
    """The plugin takes the command's options: with `api_key` every request carries it
    (the raw-socket scenarios too: disconnect passes, not a 401); without it the run ends
    with SetupError (exit 2) naming --api-key, before any scenario."""
    report = verify_hang(
        auth_app, api_key=AUTH_KEY, scenarios=["overlap", "disconnect"], rounds=1, sessions=2
    )
    assert report.passed, report.explain()
    assert report.result("disconnect").status is Status.PASS
    with pytest.raises(SetupError, match=r"answered HTTP 401 .*\n.*pass --api-key KEY"):
        verify_hang(auth_app, scenarios=["overlap"])
    headers = {"X-Api-Key": AUTH_KEY}
    report = verify_hang(auth_app, headers=headers, scenarios=["overlap"], rounds=1, sessions=2)
    assert report.passed, report.explain()
    assert _app_threads() == []


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_an_api_that_is_not_openai_shaped_is_tested_through_its_target_file(
    tmp_path: Path,
) -> None:
    """`verify_hang(url, target="api.toml")` (which raised TypeError when `target` was the
    app's own keyword): the custom_api peer, described by its target file, passes; the
    target file's dialect and session are what the report says it spoke."""
    with running(PEERS["custom_api"], tmp_path) as url:
        report = verify_hang(url, target=str(ROOT / "tests" / "peers" / "custom_api.toml"),
                             scenarios=["baseline", "overlap", "burst"], rounds=2,
                             junit=str(tmp_path / "verify.xml"))  # fmt: skip
    assert report.passed, report.explain()
    target = report.to_json()["target"]
    assert isinstance(target, dict)
    assert target["dialect"] == "target"
    assert target["session_in"] == "body:conversation_id"
    assert (tmp_path / "verify.xml").read_text(encoding="utf-8").count("<testcase") == 3
