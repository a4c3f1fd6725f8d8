"""The one exception tree of jarvis.

    JarvisError
    ├── ConfigError        a setting that cannot work (bad flag value, unknown fault)
    ├── BadRequest         client input the API refuses; carries the HTTP status
    ├── UpstreamError      the fronted OpenAI-compatible server failed us
    ├── ServerStartError   the server could not start (port taken, address invalid)
    └── ToolError          a `jarvis` command cannot do its job; raised in jarvis_cli:
        ├── InputError         diagnose: an input cannot be read (logs/sources.py)
        ├── Unreachable        verify-hang, swarm: nothing answers at the URL (verify/target.py)
        ├── LocustFailed       swarm: locust did not run to the end (swarm/runner.py)
        └── ReportMissing      swarm: locust left no stats to judge (swarm/thresholds.py)

The CLI maps these to named exit codes (each command its own, `cli/main.py`
for the rest); the HTTP layer maps `BadRequest` to an OpenAI-style error
body. Nothing else is raised on purpose.
"""

from __future__ import annotations


class JarvisError(Exception):
    """Base of every error jarvis raises on purpose."""


class ConfigError(JarvisError):
    """A configuration value that cannot work."""


class BadRequest(JarvisError):  # noqa: N818 - named for the HTTP status it maps to
    """Client input the API refuses, with the OpenAI error fields it maps to."""

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


class UpstreamError(JarvisError):
    """The upstream OpenAI-compatible server failed, was unreachable, or spoke garbage."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ServerStartError(JarvisError):
    """The server could not start: the address is taken, invalid, or not ours to bind."""


class ToolError(JarvisError):
    """A `jarvis` command cannot do its job; the subclasses live beside their commands."""
