"""`verify_hang` and `averify_hang`: check the input, serve the app if given one, run the
scenarios as `verify-hang --url` does (verdicts rest on behaviour alone), wrap the report.
The options are the command's own (`jarvis_cli.verify.options.VerifyOptions`)."""

from __future__ import annotations

import asyncio
import inspect
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ._report import VerifyReport

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from ..verify.options import Prepared, VerifyOptions
    from ..verify.report import Report


def verify_hang(
    app: ASGIApp | str, /, options: VerifyOptions | None = None, **settings: Any
) -> VerifyReport:
    """Run verify-hang against an ASGI app (served on 127.0.0.1 meanwhile) or a URL.

    The options are `jarvis verify-hang`'s, one for one, by the same names
    (`VerifyOptions`): `target="api.toml"`, `dialect="anthropic"`,
    `session_in="body:metadata.session_id"`, `headers=["X-Team: a"]`, `api_key=...`,
    `expect="independent"`, `scenarios=["overlap"]`, `junit="verify.xml"`, ...; pass
    them as keywords, or as a `VerifyOptions` (keywords then override it). One left out
    takes the flag's default with `--url`.

    Blocks until the run ends. An app is served on a thread with an event loop of its
    own, so an app that blocks its loop is seen as a hung server, as it would be in
    production. Bad input raises `jarvis.exceptions.ConfigError`; a URL where nothing
    answers, `Unreachable`; a server that refuses the first request for a reason the
    options explain (401, 404, no stream), `SetupError` (`ToolError`s). In async tests,
    use `await averify_hang(...)`.
    """
    if _in_event_loop():
        from jarvis.exceptions import ConfigError

        raise ConfigError(
            "verify_hang() blocks, and this thread runs an event loop (an async test?): "
            "use `await averify_hang(...)` instead"
        )
    checked, prepare = _prepare(app, options, settings)
    if isinstance(checked, str):
        prepared = prepare(checked)
        return _written(prepared, asyncio.run(_verify(prepared)))
    from ._server import AppThread

    host = AppThread(checked)
    with host as url:
        prepared = prepare(url)
        report = _written(prepared, asyncio.run(_verify(prepared)))
    return report.served(host.notes)


async def averify_hang(
    app: ASGIApp | str, /, options: VerifyOptions | None = None, **settings: Any
) -> VerifyReport:
    """`verify_hang` for async tests. An app is served on the test's own event loop, so it
    may use the test's async fixtures; but an app that blocks that loop stalls the run as
    well, where the sync `verify_hang` reports a hang."""
    checked, prepare = _prepare(app, options, settings)
    if isinstance(checked, str):
        prepared = prepare(checked)
        return _written(prepared, await _verify(prepared))
    from ._server import served

    async with served(checked) as here:
        prepared = prepare(here.url)
        report = _written(prepared, await _verify(prepared))
    return report.served(here.notes)


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _prepare(
    app: object, options: VerifyOptions | None, settings: dict[str, Any]
) -> tuple[ASGIApp | str, Callable[[str], Prepared]]:
    """Check everything before anything starts: the app or URL, and the options (as the
    command checks its flags), then how to prepare the run for the URL it will have."""
    from ..verify.options import VerifyOptions

    chosen = (options or VerifyOptions()).replace(**settings)
    checked = _target(app)
    chosen.prepare(served="http://127.0.0.1:1")  # every check, before the app is served

    def prepare(url: str) -> Prepared:
        return chosen.prepare(served=url)

    return checked, prepare


def _written(prepared: Prepared, report: Report) -> VerifyReport:
    """The report, with the files its options ask for written (JSON, JUnit, the page)."""
    from ..verify import outputs

    outputs.write(report, prepared, None)
    return VerifyReport(report, verbose=prepared.options.verbose)


def _target(target: object) -> ASGIApp | str:
    """An http(s) URL, or an ASGI 3 app (an async callable); else a ConfigError."""
    from jarvis.exceptions import ConfigError

    if isinstance(target, str):
        parts = urllib.parse.urlsplit(target)
        if parts.scheme in ("http", "https") and parts.hostname:
            return target
        hint = " (an import string? import the app and pass it)" if "://" not in target else ""
        raise ConfigError(f"verify_hang() takes an http(s):// URL, not {target!r}{hint}")
    if isinstance(target, type):
        what = f"the class {target.__name__} (an instance of it?)"
    elif inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - the method: is it async?
    ):
        return cast("ASGIApp", target)
    else:
        sync = " (a WSGI app? serve it and pass its URL)" if callable(target) else ""
        what = f"an object of type {type(target).__name__}{sync}"
    raise ConfigError(
        "verify_hang() takes an ASGI 3 app (an async callable app(scope, receive, send), "
        f"such as FastAPI() or Starlette()) or an http(s):// URL, not {what}"
    )


async def _verify(prepared: Prepared) -> Report:
    from ..verify.report import QuietView, Report
    from ..verify.runner import run

    return Report(prepared.plan, await run(prepared.plan, prepared.spec, QuietView()))
