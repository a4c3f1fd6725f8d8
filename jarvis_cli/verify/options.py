"""Every option of a verify run, defined once: `jarvis verify-hang` takes each as a flag,
`jarvis_cli.testing.verify_hang` as a keyword of the same name, and both resolve them
here (`VerifyOptions.prepare`) into a Plan and a Spec, checked the same way.

Light on purpose: the pytest plugin imports it at every pytest start; what a run needs
(the chat API, the embedded server) is imported when one is prepared.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jarvis.exceptions import ConfigError

from .plan import (
    CANCEL_MARGIN_S,
    CANCEL_PATH,
    CANCEL_WAIT,
    CLEANUP_BOUND_S,
    DETACH_GRACE,
    EMBEDDED_CANCEL_WAIT_S,
    EMBEDDED_DETACH_GRACE_S,
    REMOTE_CANCEL_WAIT_S,
    RESUMABLE_DETACH_GRACE_S,
    RESUME_PATH,
    SCENARIOS,
    WORK_STOP_MARGIN_S,
    Expect,
    Plan,
)

if TYPE_CHECKING:
    from .runner import Spec

# The key of a VerifyOptions field's metadata that holds the rest of its definition.
_DEFINITION = "jarvis.verify-option"

PathLike = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class Option:
    """One option of a verify run, as every surface shows it."""

    #: The field of `VerifyOptions`, the keyword of `verify_hang()`, the CLI parameter.
    name: str
    #: The flags of `jarvis verify-hang`: `("--url",)`, `("--verbose", "-v")`.
    flags: tuple[str, ...]
    default: Any
    #: For `--help`; None when a shared option of `jarvis_cli/dialect_options.py` or
    #: `jarvis_cli/faults.py` (the same flag in swarm) says it.
    help: str | None
    #: Given once per value (`--url A --url B`; a list for the keyword).
    repeatable: bool = False
    #: The rest of typer's option: metavar, envvar.
    extra: Mapping[str, Any] = field(default_factory=dict)


def _option(
    default: object,
    *flags: str,
    help: str | None = None,
    repeatable: bool = False,
    **extra: Any,
) -> Any:
    """A `VerifyOptions` field: its default, and the rest of its definition as metadata."""
    return field(default=default, metadata={_DEFINITION: (flags, help, repeatable, extra)})


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    """What to test and how: each field is a flag of `jarvis verify-hang` (named in
    `OPTIONS`) and a keyword of `verify_hang()`; a bad value is a ConfigError naming the
    flag, from either."""

    urls: Sequence[str] = _option(
        (),
        "--url",
        help="Test this server (base URL, with or without /v1). Repeat it for replicas behind "
        "a balancer: each session's prompts then go to the URLs in turn, which finds a "
        "registry that lives inside each process. Default: start the embedded reference "
        "server.",
        repeatable=True,
        metavar="URL",
    )
    dialect: str | None = _option(None, "--dialect")
    session_in: str | None = _option(None, "--session-in")
    target: PathLike | None = _option(None, "--target")
    health: str | None = _option(None, "--health")
    headers: Sequence[str] | Mapping[str, str] = _option(
        (),
        "--header",
        help="A header every request carries, streamed, raw or probe: 'Name: value' "
        "(repeatable; it wins over --api-key for the same name).",
        repeatable=True,
        metavar="'NAME: VALUE'",
    )
    api_key: str | None = _option(
        None,
        "--api-key",
        help="The API key, on every request: Authorization: Bearer KEY (x-api-key with "
        "--dialect anthropic).",
        envvar="JARVIS_VERIFY_API_KEY",
    )
    model: str | None = _option(
        None, "--model", help="Model to request. Default: the first of GET /v1/models."
    )
    expect: str = _option(
        Expect.SUPERSEDE.value,
        "--expect",
        help="supersede: one stream per session, a new prompt ends the old one. "
        "independent: overlapping prompts may run side by side. reject: a prompt in a busy "
        "session is refused at once with 409 and the running answer goes on whole. queue: it "
        "waits for the running answer to end, then streams. The embedded server runs the "
        "matching --on-busy.",
    )
    scenarios: Sequence[str] | str = _option(
        (),
        "--scenario",
        help=f"Run only this scenario (repeatable): {', '.join(SCENARIOS)}.",
        repeatable=True,
    )
    strict: bool | None = _option(
        None,
        "--strict/--no-strict",
        help="Hold the server to jarvis's own contract: a finish_reason chunk and [DONE] on "
        "every stream, end_reason, exact text. Default: on for the embedded server, off "
        "with --url (verdicts rest on behaviour alone).",
    )
    max_tokens: int | None = _option(
        None,
        "--max-tokens",
        help="Cap every prompt's max_tokens at N (by default each asks what its scenario "
        "needs, up to 300): for a slow engine (a CPU at 15 tokens/s), so that each answer "
        "takes seconds. Keep answers long enough to still stream when the next prompt of "
        "their session arrives (about a second's worth).",
        metavar="N",
    )
    sessions: int = _option(8, "--sessions", help="Sessions that overlap at once.")
    rounds: int = _option(
        5, "--rounds", help="Overlap rounds per session (the classic test repeats 5)."
    )
    overlap_ms: float = _option(
        50.0,
        "--overlap-ms",
        help="Delay from the server answering prompt A to prompt B, same session (ms).",
    )
    deadline: float = _option(
        5.0,
        "--deadline",
        help="The idle bound (s): a request that receives no byte for this long, while no "
        "other stream of the run receives one either, is hung. A stream that keeps "
        "delivering bytes, or waits in the server's queue while others stream, is slow, "
        "never hung.",
    )
    cancel_wait: float | None = _option(
        None,
        CANCEL_WAIT.flag,
        help="Bound (s) on how long a superseded stream may take to end: the server's "
        f"{CANCEL_WAIT.flag}. Default {EMBEDDED_CANCEL_WAIT_S:g} (the embedded server is "
        f"started with it), or {REMOTE_CANCEL_WAIT_S:g} (jarvis serve's default) with --url.",
    )
    detach_grace: float | None = _option(
        None,
        DETACH_GRACE.flag,
        help="How long (s) the server may hold an answer whose client left, for a reload to "
        "reattach: a dropped stream must end within it + "
        f"{CLEANUP_BOUND_S:g} s (disconnect, leaks). Default with --url: "
        f"{RESUMABLE_DETACH_GRACE_S:g} when the server offers resume (its events carry "
        "ids and --resume-path answers for a stream of the run; jarvis serve's default, "
        "and the order of most resumable-stream servers: give yours), else 0. The "
        f"embedded server is started with it (default {EMBEDDED_DETACH_GRACE_S:g}).",
    )
    resume_path: str = _option(
        RESUME_PATH,
        "--resume-path",
        help="The resume scenario's GET, under the chat URL's base: {id} is the stream id "
        "(X-Stream-Id, else the id in the events' data); sent with Last-Event-ID and the "
        "session. With several --url it goes to the next URL after the one that streamed.",
    )
    cancel_path: str = _option(
        CANCEL_PATH,
        "--cancel-path",
        help="The resume scenario's Stop: POST here, under the chat URL's base ({id}: the "
        "stream id), with the session.",
    )
    probe_threshold_ms: float = _option(
        250.0,
        "--probe-threshold-ms",
        help="A /healthz probe slower than this fails responsiveness.",
    )
    engine_metrics: str | None = _option(
        None,
        "--engine-metrics",
        help="The inference engine's Prometheus endpoint, for the work_stops check: after "
        "clients leave or are superseded, its busy gauge must fall back within "
        "--work-stop-bound. Behind a proxy (jarvis serve --upstream, your app), the "
        "engine's own, not the proxy's. Default: <url>/metrics, when it exposes a gauge "
        "jarvis knows (llama.cpp, vLLM, SGLang, TGI); without one, work_stops is not run.",
        metavar="http://ENGINE/metrics",
    )
    busy_gauge: str | None = _option(
        None,
        "--busy-gauge",
        help="The engine's gauge of requests it is processing now. Default: the first "
        "found of llamacpp:requests_processing, vllm:num_requests_running, "
        "sglang:num_running_reqs, tgi_batch_current_size.",
        metavar="NAME",
    )
    work_stop_bound: float | None = _option(
        None,
        "--work-stop-bound",
        help="How soon (s) the engine's busy gauge must be back at its level from before, "
        "after clients left or were superseded. Default: the cancel bound (--cancel-wait "
        f"+ {CANCEL_MARGIN_S:g} s) + {WORK_STOP_MARGIN_S:g} s for the engine to reach its "
        "next token.",
    )
    log_file: PathLike | None = _option(
        None,
        "--log-file",
        help="The server's structured log, to check for this run's window. Embedded: where "
        "its server logs (default: a new temporary file).",
    )
    faults: Sequence[str] = _option((), "--fault", repeatable=True)
    workers: int = _option(
        1,
        "--workers",
        help="Embedded server only: run it as this many worker processes behind its one port "
        "(jarvis serve --workers N); above 1 needs --registry. Every scenario that reads its "
        "log reads each worker's file.",
    )
    registry: str | None = _option(
        None,
        "--registry",
        help="Embedded server only: its shared registry (jarvis serve --registry): one stream "
        "per session across --workers. Must answer at start (else exit 3).",
        metavar="redis://HOST:PORT/DB",
    )
    json_path: str | None = _option(
        None,
        "--json",
        help="Write the versioned JSON report here ('-': stdout, instead of the table).",
    )
    junit: PathLike | None = _option(
        None, "--junit", help="Write JUnit XML here: one testcase per scenario."
    )
    verbose: bool = _option(
        False, "--verbose", "-v", help="Show all evidence, passing scenarios too."
    )
    html: PathLike | None = _option(
        None,
        "--html",
        help="Also draw the server side of the run from its log: the timeline page `jarvis "
        "diagnose --html` writes (embedded server, or --url with --log-file).",
    )

    @classmethod
    def build(cls, **values: Any) -> VerifyOptions:
        """From keywords (the CLI's parameters, `verify_hang()`'s options): an unknown name
        is a ConfigError listing the known ones; a repeatable option takes a list (or one
        value); None leaves an option at its default."""
        for name in values:
            if name not in _BY_NAME:
                close = difflib.get_close_matches(name, _BY_NAME, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                known = ", ".join(sorted(_BY_NAME))
                raise ConfigError(f"no option {name!r}{hint}; the options are: {known}")
        given = {k: _checked(_BY_NAME[k], v) for k, v in values.items() if v is not None}
        return cls(**given)  # type: ignore[arg-type]  # `_checked` saw to each type

    def replace(self, **values: Any) -> VerifyOptions:
        """These options with some changed (checked as `build` checks them)."""
        return VerifyOptions.build(**{**self.to_dict(), **values})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def prepare(self, *, served: str | None = None) -> Prepared:
        """Check every option together and turn them into a run's Plan and Spec; a value
        that cannot work is a ConfigError (exit 2) before anything starts. `served`: the
        URL of an app the caller serves itself, tested first (before any `urls`)."""
        from ..chatapi.headers import parse_headers
        from ..chatapi.resolve import chat_api
        from ..faults import embedded_faults
        from .embedded import check_fleet
        from .runner import Spec

        urls = ((served,) if served else ()) + tuple(self.urls)
        chat = chat_api(
            urls,
            dialect=self.dialect,
            session_in=self.session_in,
            target=None if self.target is None else Path(self.target),
            health=self.health,
        )
        if self.target is not None and not chat.urls:
            raise ConfigError(f"--target {self.target}: the file names no url; pass --url")
        first = chat.urls[0] if chat.urls else None
        faults = embedded_faults(list(self.faults), first)
        check_fleet(self.workers, self.registry, faults=faults, url=first)
        if self.html is not None and chat.urls and self.log_file is None:
            raise ConfigError(
                "--html draws the server's side of the run from its log: with --url, pass "
                "the server's log as --log-file too"
            )
        if self.html is not None:
            from ..timeline.html import check_writable

            check_writable(Path(self.html))
        plan = Plan(
            strict=self.strict if self.strict is not None else not chat.urls,
            sessions=self.sessions,
            rounds=self.rounds,
            overlap_s=self.overlap_ms / 1000,
            deadline=self.deadline,
            expect=_expect(self.expect),
            cancel_wait=_cancel_wait(self.cancel_wait, chat.urls),
            detach_grace=_detach_grace(self.detach_grace, chat.urls),
            threshold=self.probe_threshold_ms / 1000,
            scenarios=Plan.select(list(self.scenarios)),
            work_stop_bound=self.work_stop_bound,
            resume_path=self.resume_path,
            cancel_path=self.cancel_path,
            resume_required="resume" in self.scenarios,
        )
        spec = Spec(
            urls=chat.urls,
            log_file=None if self.log_file is None else Path(self.log_file),
            faults=faults,
            workers=self.workers,
            registry=self.registry,
            model=self.model,
            api_key=self.api_key,
            headers=parse_headers(self.headers),
            dialect=chat.dialect,
            session_in=chat.session_in,
            health=chat.health,
            max_tokens=_max_tokens(self.max_tokens),
            engine_metrics=_engine_metrics(self.engine_metrics),
            busy_gauge=_busy_gauge(self.busy_gauge),
        )
        return Prepared(self, plan, spec)


@dataclass(frozen=True, slots=True)
class Prepared:
    """Options checked and resolved: what one run does, and with what."""

    options: VerifyOptions
    plan: Plan
    spec: Spec


#: What a value of each plain field type may be (a keyword is not parsed as a flag is).
_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "str": ((str,), "a string"),
    "bool": ((bool,), "True or False"),
}


def _checked(option: Option, value: object) -> object:
    """`value` as the field holds it, or a ConfigError naming the flag."""
    kind = str(_TYPES[option.name]).removesuffix(" | None")
    if kind in _KINDS:
        allowed, words = _KINDS[kind]
        wrong_bool = isinstance(value, bool) and bool not in allowed
        if wrong_bool or not isinstance(value, allowed):
            raise ConfigError(f"{option.flags[0]} takes {words}, not {value!r}")
        return value
    if not option.repeatable or isinstance(value, Mapping):
        return value
    if isinstance(value, str | os.PathLike):
        return (value,)
    if isinstance(value, Sequence):
        return tuple(value)
    raise ConfigError(f"{option.flags[0]} takes a list of values, not {value!r}")


def _cancel_wait(value: float | None, urls: tuple[str, ...]) -> float:
    if value is not None:
        return value
    return REMOTE_CANCEL_WAIT_S if urls else EMBEDDED_CANCEL_WAIT_S


def _detach_grace(value: float | None, urls: tuple[str, ...]) -> float | None:
    """The grace as given; else the embedded server's, or None with --url (decided once
    the run knows whether the server offers resume)."""
    if value is not None:
        return value
    return None if urls else EMBEDDED_DETACH_GRACE_S


def _max_tokens(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= 100_000:
        raise ConfigError(f"--max-tokens must be 1..100000, not {value}")
    return value


def _engine_metrics(url: str | None) -> str | None:
    if url is None:
        return None
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            f"--engine-metrics takes the engine's metrics URL, such as "
            f"http://127.0.0.1:8080/metrics, not {url!r}"
        )
    return url


#: A Prometheus metric name.
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _busy_gauge(name: str | None) -> str | None:
    if name is not None and not _METRIC_NAME.fullmatch(name):
        raise ConfigError(
            f"--busy-gauge takes a Prometheus metric name, such as "
            f"llamacpp:requests_processing, not {name!r}"
        )
    return name


def _expect(value: str) -> Expect:
    try:
        return Expect(value)
    except ValueError:
        names = ", ".join(e.value for e in Expect)
        raise ConfigError(f"--expect takes one of {names}, not {value!r}") from None


def _definition(f: dataclasses.Field[Any]) -> Option:
    flags, help_text, repeatable, extra = f.metadata[_DEFINITION]
    return Option(f.name, flags, f.default, help_text, repeatable, extra)


_TYPES = {f.name: f.type for f in dataclasses.fields(VerifyOptions)}
#: Every option of a verify run, in field order.
OPTIONS: tuple[Option, ...] = tuple(_definition(f) for f in dataclasses.fields(VerifyOptions))
_BY_NAME = {o.name: o for o in OPTIONS}


def option(name: str) -> Option:
    """The definition of one option, by its field name."""
    return _BY_NAME[name]
