"""Server settings, validated once, in one frozen object.

Every knob of `jarvis serve` lives here with its default, so the CLI, the
tests and the benchmarks build servers the same way. The guard's own settings
(cancel wait, batching, timeouts, watchdog, log format, registry) are one
nested `GuardSettings`, defined in `jarvis.settings` for library and server alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .exceptions import ConfigError
from .faults import Fault
from .settings import GuardSettings

#: Bytes in the MB of `--log-max-mb` (what `ls -lh` calls M).
MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything that shapes a running jarvis server."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: The guard's settings; its `log_format` is also the format of `log_file`.
    guard: GuardSettings = field(default_factory=GuardSettings)
    log_file: Path | None = Path("logs/system.log")
    #: Rotate the log before it would pass this many MiB; None or 0: never rotate.
    log_max_mb: float | None = None
    #: Rotated files kept beside the log (`system.log.1` … `.N`); the oldest is dropped.
    log_backups: int = 5
    #: Largest request body accepted, in bytes.
    max_body_bytes: int = 1 << 20
    #: Synthetic model: tokens per second (0 = as fast as the loop allows).
    token_rate: float = 100.0
    #: Synthetic model: delay before the first token, in milliseconds.
    first_token_ms: float = 20.0
    #: Proxy to this OpenAI-compatible base URL instead of the synthetic model.
    upstream: str | None = None
    upstream_api_key: str | None = None
    faults: frozenset[Fault] = field(default_factory=frozenset)
    #: Worker processes behind the one listening socket (more than 1 needs `guard.registry`).
    workers: int = 1
    #: This process's number among the workers (0 when alone); set by the supervisor.
    worker: int = 0

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.port <= 65535, f"port must be 0..65535, not {self.port}"),
            (self.max_body_bytes >= 1024, "--max-body-bytes must be >= 1024"),
            (self.token_rate >= 0, "--token-rate must be >= 0"),
            (self.first_token_ms >= 0, "--first-token-ms must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        self._check_rotation()
        self._check_fleet()
        if self.upstream is not None and not self.upstream.startswith(("http://", "https://")):
            raise ConfigError(f"--upstream must be an http(s) URL, not {self.upstream!r}")

    def _check_fleet(self) -> None:
        # The guard's own settings (the registry URL among them) were checked when built.
        registry = self.guard.registry
        if self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, not {self.workers}")
        if self.workers > 1 and registry is None:
            raise ConfigError(
                f"--workers {self.workers} needs --registry redis://HOST:PORT/DB: the default "
                "registry lives inside one process, so a second prompt landing on another "
                "worker would stream beside the first. Start redis-server and pass its URL."
            )
        registry_faults = {Fault.NO_CANCEL, Fault.IGNORE_CANCEL} & self.faults
        if registry is not None and registry_faults:
            names = ", ".join(sorted(f.value for f in registry_faults))
            raise ConfigError(
                f"--fault {names} reproduces bugs of the in-process registry; drop --registry"
            )
        if self.workers > 1 and self.log_max_mb:
            raise ConfigError(
                "--log-max-mb rotates one process's file; with --workers each worker writes "
                "its own file: rotate them with logrotate (SIGHUP reopens)"
            )

    def _check_rotation(self) -> None:
        mb = self.log_max_mb
        if mb is not None and not (math.isfinite(mb) and mb >= 0):
            raise ConfigError(f"--log-max-mb must be a size >= 0 (0: never rotate), not {mb}")
        if mb and int(mb * MIB) < 1:
            raise ConfigError(f"--log-max-mb {mb} is under one byte; 0 means never rotate")
        if mb and self.log_file is None:
            raise ConfigError("--log-max-mb rotates a file; --log-file - writes to stdout")
        if self.log_backups < 1:
            raise ConfigError(
                f"--log-backups must be >= 1 (rotation keeps at least one old file), "
                f"not {self.log_backups}"
            )

    @property
    def log_max_bytes(self) -> int | None:
        """`--log-max-mb` in bytes, as `EventLog(max_bytes=...)` takes it; None: never."""
        return int(self.log_max_mb * MIB) if self.log_max_mb else None

    def has(self, fault: Fault) -> bool:
        """Whether a deliberate bug is switched on."""
        return fault in self.faults
