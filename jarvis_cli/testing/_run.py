"""`verify_hang` and `averify_hang`: check the input, serve the app if given one, run the
scenarios as `verify-hang --url` does (verdicts rest on behaviour alone), wrap the report."""

from __future__ import annotations

import asyncio
import inspect
import os
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack, cast

from ._report import VerifyReport

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from ..verify.plan import Plan
    from ..verify.report import Report
    from ..verify.runner import Spec


class VerifyOptions(TypedDict, total=False):
    """The options of `verify_hang`, each named after a `jarvis verify-hang` flag (an error
    names the flag); one left out takes the flag's default with `--url`."""

    #: Run only these scenarios (`--scenario`), e.g. `["overlap"]`; default: all.
    scenarios: Sequence[str] | str
    #: `"supersede"` (one stream per session; default) or `"independent"` (`--expect`).
    expect: str
    #: Seconds any request may take before it counts as hung (`--deadline`, 5).
    deadline: float
    #: Sessions that overlap at once (`--sessions`, 8), and rounds of overlap (`--rounds`, 5).
    sessions: int
    rounds: int
    #: The bound (s) on a superseded stream's end (`--cancel-wait`, 2).
    cancel_wait: float
    #: `openai` or `anthropic` (`--dialect`); where the session id travels, such as
    #: `header:X-Session-Id` or `body:metadata.session_id` (`--session-in`).
    dialect: str
    session_in: str
    #: A cheap path to probe, such as `/health` (`--health`).
    health: str
    #: The model to ask for (`--model`), the bearer token (`--api-key`), and the server's
    #: structured log, for the leak checks (`--log-file`).
    model: str
    api_key: str
    log_file: str | os.PathLike[str]


def verify_hang(target: ASGIApp | str, **options: Unpack[VerifyOptions]) -> VerifyReport:
    """Run verify-hang against an ASGI app (served on 127.0.0.1 meanwhile) or a URL.

    Blocks until the run ends (each request within `deadline`, each scenario
    within its budget). An app is served on a thread with an event loop of its
    own, so an app that blocks its loop is seen as a hung server, as it would be
    in production. Bad input raises `jarvis.exceptions.ConfigError`; a URL where
    nothing answers, `Unreachable` (a `ToolError`). In async tests, use
    `await averify_hang(...)`.
    """
    if _in_event_loop():
        from jarvis.exceptions import ConfigError

        raise ConfigError(
            "verify_hang() blocks, and this thread runs an event loop (an async test?): "
            "use `await averify_hang(...)` instead"
        )
    checked, plan, spec_for = _prepare(target, options)
    if isinstance(checked, str):
        return VerifyReport(asyncio.run(_verify(plan, spec_for(checked))))
    from ._server import AppThread

    host = AppThread(checked)
    with host as url:
        report = asyncio.run(_verify(plan, spec_for(url)))
    return VerifyReport(report, host.notes)


async def averify_hang(target: ASGIApp | str, **options: Unpack[VerifyOptions]) -> VerifyReport:
    """`verify_hang` for async tests. An app is served on the test's own event loop, so it
    may use the test's async fixtures; but an app that blocks that loop stalls the run as
    well, where the sync `verify_hang` reports a hang."""
    checked, plan, spec_for = _prepare(target, options)
    if isinstance(checked, str):
        return VerifyReport(await _verify(plan, spec_for(checked)))
    from ._server import served

    async with served(checked) as here:
        report = await _verify(plan, spec_for(here.url))
    return VerifyReport(report, here.notes)


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _prepare(
    target: object, options: VerifyOptions
) -> tuple[ASGIApp | str, Plan, Callable[[str], Spec]]:
    """Check everything before anything starts: the target (an app or a URL), the plan,
    and how to speak to the server, as a Spec for the URL it will have."""
    from jarvis.exceptions import ConfigError

    from ..chatapi.resolve import chat_api
    from ..verify.plan import REMOTE_CANCEL_WAIT_S, Expect, Plan
    from ..verify.runner import Spec

    unknown = sorted(set(options) - VerifyOptions.__optional_keys__)
    if unknown:
        known = ", ".join(sorted(VerifyOptions.__optional_keys__))
        raise ConfigError(f"verify_hang() has no option {unknown[0]!r}; it has: {known}")
    checked = _target(target)
    try:
        expect = Expect(options.get("expect", Expect.SUPERSEDE))
    except ValueError:
        raise ConfigError(
            f"expect= takes 'supersede' or 'independent', not {options.get('expect')!r}"
        ) from None
    names = options.get("scenarios") or []
    sizes: dict[str, Any] = {
        k: v for k, v in options.items() if k in ("deadline", "sessions", "rounds")
    }
    plan = Plan(
        strict=False,
        expect=expect,
        cancel_wait=options.get("cancel_wait", REMOTE_CANCEL_WAIT_S),
        scenarios=Plan.select([names] if isinstance(names, str) else list(names)),
        **sizes,
    )
    chat = chat_api(
        dialect=options.get("dialect"),
        session_in=options.get("session_in"),
        health=options.get("health"),
    )
    log_file = options.get("log_file")

    def spec_for(url: str) -> Spec:
        return Spec(
            urls=(url,),
            log_file=None if log_file is None else Path(log_file),
            model=options.get("model"),
            api_key=options.get("api_key"),
            dialect=chat.dialect,
            session_in=chat.session_in,
            health=chat.health,
        )

    return checked, plan, spec_for


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


async def _verify(plan: Plan, spec: Spec) -> Report:
    from ..verify.report import QuietView, Report
    from ..verify.runner import run

    return Report(plan, await run(plan, spec, QuietView()))
