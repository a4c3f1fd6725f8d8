"""The one exception tree of jarvis, with the exit code each error ends a command with.

    JarvisError [1]
    ├── ConfigError [2]        a setting that cannot work (bad flag value, unknown fault)
    ├── BadRequest [2]         client input the API refuses; carries the HTTP status
    │   └── SessionBusy [2]    the session is streaming and the policy refuses (409)
    ├── UpstreamError [3]      the fronted OpenAI-compatible server failed us
    ├── ServerStartError [3]   the server could not start (port taken, address invalid)
    ├── RegistryUnavailable [3] the shared registry (Redis) does not answer
    └── ToolError [1]          a `jarvis` command cannot do its job; raised in jarvis_cli:
        ├── InputError [3]     diagnose: an input cannot be read (logs/sources.py)
        ├── Unreachable [3]    verify-hang, swarm: nothing answers at the URL (verify/target.py)
        ├── SetupError [2]     verify-hang: the server refuses how it is asked (verify/target.py)
        ├── LocustFailed [3]   swarm: locust did not run to the end (swarm/runner.py)
        └── ReportMissing [3]  swarm: locust left no stats to judge (swarm/thresholds.py)

[n] is the class's `exit_code`: 1 failure, 2 usage, 3 unavailable, named by
`ExitCode` in jarvis_cli/exit_codes.py (plain ints here: jarvis never imports the CLI).
`jarvis_cli/main.py` prints the message and exits with the code, in one place; the
HTTP layer maps `BadRequest` to an OpenAI-style error body. Nothing else is
raised on purpose.
"""

from __future__ import annotations

from typing import ClassVar


class JarvisError(Exception):
    """Base of every error jarvis raises on purpose."""

    #: The exit code of a `jarvis` command this error ends; subclasses say theirs.
    exit_code: ClassVar[int] = 1  # failure


class ConfigError(JarvisError):
    """A configuration value that cannot work."""

    exit_code = 2  # usage


class BadRequest(JarvisError):  # noqa: N818 - named for the HTTP status it maps to
    """Client input the API refuses, with the OpenAI error fields it maps to."""

    exit_code = 2  # usage

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        code: str = "invalid_request",
        param: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param
        self.error_type = error_type

    @property
    def headers(self) -> dict[str, str]:
        """Headers the refusal carries besides its body (none; `SessionBusy`: Retry-After)."""
        return {}

    def to_body(self) -> dict[str, object]:
        """The OpenAI error envelope for this refusal."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class SessionBusy(BadRequest):
    """A prompt arrived while its session streams, and the guard's policy (`on_busy`)
    refuses it: `reject`, or `queue` whose wait ran out. A 409 with `Retry-After`;
    `guard.stream(...)` raises it on entry, `guard.response(...)` answers with it."""

    def __init__(self, message: str, *, code: str = "session_busy", retry_after: int = 1) -> None:
        super().__init__(message, status=409, code=code)
        #: Whole seconds the client should wait before it sends the prompt again.
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UpstreamError(JarvisError):
    """The upstream OpenAI-compatible server failed, was unreachable, or spoke garbage."""

    exit_code = 3  # unavailable

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ServerStartError(JarvisError):
    """The server could not start: the address is taken, invalid, or not ours to bind."""

    exit_code = 3  # unavailable


class RegistryUnavailable(JarvisError):  # noqa: N818 - named for what the caller sees
    """The shared registry (Redis) does not answer: no new stream can be registered."""

    exit_code = 3  # unavailable


class ToolError(JarvisError):
    """A `jarvis` command cannot do its job; the subclasses live beside their commands."""
