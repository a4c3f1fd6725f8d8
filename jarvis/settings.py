"""The guard's settings, each defined once: its default, its help and its rule.

`StreamGuard(...)` takes its keyword defaults from `GuardSettings` and checks
them through it, `ServerConfig.guard` nests one, and `jarvis serve` takes each
option's flag, default and help from it, so that the library, the server and
the command line cannot drift apart (tests/test_settings.py holds them to it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .exceptions import ConfigError

#: How a log written to a file spells its lines.
LogFormat = Literal["logfmt", "json"]
#: What a prompt does when its session is still streaming (`jarvis._busy` runs it).
OnBusy = Literal["supersede", "reject", "queue"]
ON_BUSY: tuple[str, ...] = ("supersede", "reject", "queue")
#: The URL schemes of a shared registry (Redis): `redis://`, TLS, or a local socket.
REGISTRY_SCHEMES = ("redis://", "rediss://", "unix://")
# The key of a GuardSettings field's metadata that holds the rest of its definition.
_DEFINITION = "jarvis.setting"


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting of `GuardSettings`, as every surface shows it."""

    #: The keyword of `StreamGuard` and the field of `GuardSettings`.
    name: str
    #: The option of `jarvis serve`.
    flag: str
    default: Any
    #: One or two sentences, for `--help` and the docs.
    help: str
    #: What a valid value is, as the error message says it: "> 0 seconds".
    rule: str
    #: Whether a value keeps the rule.
    accepts: Callable[[Any], bool]

    def error(self, value: object) -> str:
        """The one message for a value that breaks the rule, in both spellings of the name."""
        return f"{self.name} ({self.flag}) must be {self.rule}, not {_shown(value)}"

    def check(self, value: object) -> None:
        """Raise `ConfigError` if `value` breaks the rule (a value of the wrong type does)."""
        try:
            ok = self.accepts(value)
        except TypeError:
            ok = False
        if not ok:
            raise ConfigError(self.error(value))


def _shown(value: object) -> str:
    # 0 and 0.0 read the same, whether they came from Python or from a flag.
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:g}"
    return repr(value)


def _setting(
    default: object, *, flag: str, help: str, rule: str, accepts: Callable[[Any], bool]
) -> Any:
    """A `GuardSettings` field: its default, and the rest of its definition as metadata."""
    return field(default=default, metadata={_DEFINITION: (flag, help, rule, accepts)})


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """Every setting of a `StreamGuard`, checked when built (`ConfigError` names the
    setting and its flag). `StreamGuard.from_settings(settings)` builds a guard from one;
    `ServerConfig(guard=...)` runs a server with one."""

    cancel_wait: float = _setting(
        2.0,
        flag="--cancel-wait",
        help="Seconds a new prompt waits for the session's old stream to clean up (its "
        "token source's own finally included); past it, the old stream is fenced (nothing "
        "it still writes reaches the wire).",
        rule="> 0 seconds",
        accepts=lambda v: v > 0,
    )
    flush_ms: float = _setting(
        75.0,
        flag="--flush-ms",
        help="Debounce window of the token batcher (ms); 0 streams token by token.",
        rule=">= 0 ms",
        accepts=lambda v: v >= 0,
    )
    flush_bytes: int = _setting(
        1024,
        flag="--flush-bytes",
        help="A batch this large (bytes) is flushed at once, without waiting for the window.",
        rule=">= 1 byte",
        accepts=lambda v: v >= 1,
    )
    send_timeout: float = _setting(
        10.0,
        flag="--send-timeout",
        help="Seconds a write may stay stuck (a client that stopped reading) before its "
        "stream ends, reason=send_timeout.",
        rule="> 0 seconds",
        accepts=lambda v: v > 0,
    )
    shutdown_timeout: float = _setting(
        5.0,
        flag="--shutdown-timeout",
        help="Bound (s) on graceful shutdown; live streams end reason=shutdown.",
        rule="> 0 seconds",
        accepts=lambda v: v > 0,
    )
    log_format: LogFormat = _setting(
        "logfmt",
        flag="--log-format",
        help="How a log written to a file spells its lines: logfmt or json.",
        rule="logfmt or json",
        accepts=lambda v: v in ("logfmt", "json"),
    )
    watchdog_ms: float = _setting(
        250.0,
        flag="--watchdog-ms",
        help="Log loop_blocked when the event loop is stuck this long (ms).",
        rule=">= 10 ms",
        accepts=lambda v: v >= 10,
    )
    lag_report_s: float = _setting(
        10.0,
        flag="--lag-report",
        help="Seconds between loop_lag lines (0 = never).",
        rule=">= 0 seconds",
        accepts=lambda v: v >= 0,
    )
    registry: str | None = _setting(
        None,
        flag="--registry",
        help="Share one stream per session with every process and host using this Redis "
        "(redis://, rediss:// or unix:// URL). Unset, sessions are tracked inside this "
        "process.",
        rule="a redis://, rediss:// or unix:// URL (None: this process)",
        accepts=lambda v: v is None or (isinstance(v, str) and v.startswith(REGISTRY_SCHEMES)),
    )
    resume_ttl: float = _setting(
        0.0,
        flag="--resume-ttl",
        help="Resume on: every stream's events are kept (in this process, or on the "
        "registry's Redis) so that GET /v1/streams/{id} with Last-Event-ID replays the rest "
        "and follows it live; kept this many seconds after the stream ends. 0: resume off, "
        "a disconnect cancels at once.",
        rule=">= 0 and <= 86400 seconds (0: resume off)",
        accepts=lambda v: v >= 0 and v <= 86400,
    )
    resume_max_mb: float = _setting(
        256.0,
        flag="--resume-max-mb",
        help="With resume on, the most memory (MiB) this process spends on ended answers "
        "kept for a resume; past it the oldest are forgotten before --resume-ttl (a resume "
        "of one is a 404, or is served from Redis with --registry). Running answers are "
        "never dropped.",
        rule="> 0 MiB, finite",
        accepts=lambda v: 0 < v < math.inf,
    )
    detach_grace: float = _setting(
        15.0,
        flag="--detach-grace",
        help="With resume on, seconds an answer runs on after its last reader went away, "
        "for a reload or a dropped network to reattach; then it is cancelled as a "
        "disconnect. 0: a disconnect cancels at once (its events stay resumable).",
        rule=">= 0 seconds",
        accepts=lambda v: v >= 0,
    )
    on_busy: OnBusy = _setting(
        "supersede",
        flag="--on-busy",
        help="A prompt arriving while its session streams: supersede (cancel the running "
        "answer, wait for its cleanup, then start), reject (409 with Retry-After; the "
        "running answer goes on untouched) or queue (wait, at most --queue-wait, for the "
        "running answer to end, then start).",
        rule="supersede, reject or queue",
        accepts=lambda v: v in ON_BUSY,
    )
    queue_wait: float = _setting(
        30.0,
        flag="--queue-wait",
        help="With --on-busy queue: seconds a prompt waits for its session's running answer "
        "to end; past it, 409 with Retry-After. A queued prompt gets no byte until its turn, "
        "so keep it under the idle timeout of the proxies in front (often 60 s).",
        rule="> 0 seconds, finite",
        accepts=lambda v: 0 < v < math.inf,
    )
    ping: float = _setting(
        15.0,
        flag="--ping",
        help="Seconds of silence (a slow first token, a tool call) after which a stream "
        "sends an SSE comment, ': ping', so that a proxy's idle timeout never cuts it; "
        "never while tokens flow. 0: never.",
        rule=">= 0 seconds, finite",
        accepts=lambda v: 0 <= v < math.inf,
    )

    def __post_init__(self) -> None:
        for setting in SETTINGS:
            setting.check(getattr(self, setting.name))

    @staticmethod
    def setting(name: str) -> Setting:
        """The definition of one setting, by its field name."""
        return _BY_NAME[name]


def _definition(f: dataclasses.Field[Any]) -> Setting:
    flag, help_text, rule, accepts = f.metadata[_DEFINITION]
    return Setting(f.name, flag, f.default, help_text, rule, accepts)


#: Every guard setting, in field order.
SETTINGS: tuple[Setting, ...] = tuple(_definition(f) for f in dataclasses.fields(GuardSettings))
_BY_NAME = {s.name: s for s in SETTINGS}
