"""What a verify run will do: the scenarios, their order, and every knob, validated once."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from jarvis.exceptions import ConfigError
from jarvis.settings import GuardSettings

#: Every scenario, in the order a run performs them. `responsiveness` is judged from
#: the prober that runs through all the others; `leaks` looks back over the whole run.
#: `work_stops` reads the engine's busy gauge, which counts every request: it runs while
#: nothing else of the run loads the engine (before the fresh-session calibration).
SCENARIOS: tuple[str, ...] = (
    "baseline",
    "work_stops",
    "overlap",
    "burst",
    "isolation",
    "disconnect",
    "slow_reader",
    "hostile_input",
    "resume",
    "responsiveness",
    "leaks",
)

#: The server's cancel wait, the bound a run holds a superseded stream's end to: the
#: same setting, rule and flag as the guard's (`jarvis.settings`).
CANCEL_WAIT = GuardSettings.setting("cancel_wait")
#: The bound on a superseded stream's end when verify-hang starts the server itself
#: (it passes it as `--cancel-wait`): short, so a slow cleanup shows in a short run.
EMBEDDED_CANCEL_WAIT_S = 0.5
#: With --url, assume the guard's own default (what `jarvis serve` runs with).
REMOTE_CANCEL_WAIT_S: float = CANCEL_WAIT.default
#: A superseded stream may end this long after its cancel wait (scheduling, cleanup):
#: the cancel bound is the two together.
CANCEL_MARGIN_S = 0.5
#: What the engine may take, beyond the cancel bound, to notice a client left and stop:
#: it checks at its next token, and a token of a loaded engine can take most of a second.
WORK_STOP_MARGIN_S = 1.0
#: A dropped client's stream must be gone from the server within this (after the grace
#: for a reattach, on a server that offers resume: `Context.cleanup_bound`).
CLEANUP_BOUND_S = 1.0
#: How long a server that offers resume may hold a dropped answer for a reattach: the
#: same setting, rule and flag as the guard's (`jarvis.settings`).
DETACH_GRACE = GuardSettings.setting("detach_grace")
#: The grace the embedded server is started with (it passes it as `--detach-grace`) and
#: judged by: short, so that a default run does not wait a real grace out.
EMBEDDED_DETACH_GRACE_S = 0.3
#: With --url, a server that offers resume may hold a dropped answer this long: jarvis
#: serve's default, and the order of magnitude of most resumable-stream servers.
RESUMABLE_DETACH_GRACE_S: float = DETACH_GRACE.default
#: The longest grace a run will wait out (a disconnect waits it once, leaks once more).
MAX_DETACH_GRACE_S = 600.0
#: Where a stream is resumed and stopped, under the chat URL's base: `{id}` is the stream id.
RESUME_PATH = "/v1/streams/{id}"
CANCEL_PATH = "/v1/streams/{id}/cancel"


class Expect(enum.StrEnum):
    """What the server promises when a prompt arrives in a session that is streaming."""

    #: One stream per session: the new prompt supersedes the old stream.
    SUPERSEDE = "supersede"
    #: Overlapping prompts run side by side (most public servers).
    INDEPENDENT = "independent"
    #: The new prompt is refused at once (409) and the running answer goes on whole
    #: (`jarvis serve --on-busy reject`).
    REJECT = "reject"
    #: The new prompt waits for the running answer to end, then streams
    #: (`jarvis serve --on-busy queue`).
    QUEUE = "queue"

    @property
    def on_busy(self) -> str | None:
        """The `jarvis serve --on-busy` policy that keeps this promise (None: none does)."""
        return None if self is Expect.INDEPENDENT else self.value


@dataclass(frozen=True, slots=True)
class Plan:
    """Every setting of one run."""

    sessions: int = 8
    rounds: int = 5
    overlap_s: float = 0.05
    deadline: float = 5.0
    expect: Expect = Expect.SUPERSEDE
    cancel_wait: float = EMBEDDED_CANCEL_WAIT_S
    #: `--detach-grace`: how long the server may hold an answer whose client left, for a
    #: reattach; None: `RESUMABLE_DETACH_GRACE_S` if the server offers resume, else 0
    #: (`Context.grace`, once the run has asked the server).
    detach_grace: float | None = None
    threshold: float = 0.25
    scenarios: tuple[str, ...] = SCENARIOS
    #: Hold the server to jarvis's own contract: a terminal chunk and [DONE] on every
    #: stream, `end_reason`, exact text. Off, a verdict rests on behaviour alone.
    strict: bool = False
    #: `--work-stop-bound`: how soon the engine must be idle again after its clients left;
    #: None: the cancel bound plus `WORK_STOP_MARGIN_S` (`work_stop_s`).
    work_stop_bound: float | None = None
    #: The `resume` scenario's endpoints (`--resume-path`, `--cancel-path`), and whether
    #: the user asked for it by name (`--scenario resume`): a server that does not offer
    #: resume then fails it, where otherwise it is not run.
    resume_path: str = RESUME_PATH
    cancel_path: str = CANCEL_PATH
    resume_required: bool = False

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.sessions <= 256, "--sessions must be 1..256"),
            (1 <= self.rounds <= 100, "--rounds must be 1..100"),
            (0 <= self.overlap_s < self.deadline, "--overlap-ms must be >= 0 and below --deadline"),
            (0 < self.deadline <= 600, "--deadline must be > 0 and <= 600 seconds"),
            (CANCEL_WAIT.accepts(self.cancel_wait), CANCEL_WAIT.error(self.cancel_wait)),
            (
                self.detach_grace is None or 0 <= self.detach_grace <= MAX_DETACH_GRACE_S,
                f"{DETACH_GRACE.flag} must be >= 0 and <= {MAX_DETACH_GRACE_S:g} seconds, not "
                f"{self.detach_grace}",
            ),
            (self.threshold > 0, "--probe-threshold-ms must be > 0"),
            (
                self.work_stop_bound is None or 0 < self.work_stop_bound <= 600,
                "--work-stop-bound must be > 0 and <= 600 seconds",
            ),
            (bool(self.scenarios), "no scenario selected"),
            (_a_path(self.resume_path), f"--resume-path {self.resume_path!r}: {_PATH_RULE}"),
            (_a_path(self.cancel_path), f"--cancel-path {self.cancel_path!r}: {_PATH_RULE}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @staticmethod
    def select(names: list[str] | None) -> tuple[str, ...]:
        """The scenarios to run, in run order; an unknown name is a usage error."""
        if not names:
            return SCENARIOS
        unknown = [n for n in names if n not in SCENARIOS]
        if unknown:
            raise ConfigError(
                f"unknown --scenario {unknown[0]!r}; choose from: {', '.join(SCENARIOS)}"
            )
        return tuple(n for n in SCENARIOS if n in names)

    @property
    def work_stop_s(self) -> float:
        """The bound on the engine's busy gauge falling back after its clients left: the
        cancel bound (`--cancel-wait` + 0.5 s, what a superseded stream may take to end)
        plus `WORK_STOP_MARGIN_S`, unless `--work-stop-bound` says otherwise."""
        if self.work_stop_bound is not None:
            return self.work_stop_bound
        return self.cancel_wait + CANCEL_MARGIN_S + WORK_STOP_MARGIN_S

    def budget(self) -> float:
        """Last-resort bound on one scenario; each request inside has its own deadline."""
        return (self.rounds + 2) * (self.deadline + 1.0) + 2.0

    def to_json(self) -> dict[str, object]:
        return {
            "sessions": self.sessions,
            "rounds": self.rounds,
            "overlap_ms": round(self.overlap_s * 1000),
            "deadline_s": self.deadline,
            "expect": self.expect.value,
            "cancel_wait_s": self.cancel_wait,
            "detach_grace_s": self.detach_grace,
            "probe_threshold_ms": round(self.threshold * 1000),
            "scenarios": list(self.scenarios),
            "strict": self.strict,
            "work_stop_bound_s": self.work_stop_s,
            "resume_path": self.resume_path,
            "cancel_path": self.cancel_path,
            "resume_required": self.resume_required,
        }


_PATH_RULE = "a path that starts with / and holds {id} (where the stream id goes)"


def _a_path(path: str) -> bool:
    return path.startswith("/") and "{id}" in path and not any(c.isspace() for c in path)
