"""Diagnostic hook for `fleet_latency.py --lease-ms`: a server started with this folder on
PYTHONPATH and JARVIS_BENCH_LEASE_MS set gets that lease for its Redis registry (the
heartbeat renews every lease / 3). jarvis has no flag for it; this isolates the heartbeat's
cost without touching jarvis. Python imports `sitecustomize` at start-up by itself.
"""

import os

_LEASE_MS = os.environ.get("JARVIS_BENCH_LEASE_MS")
if _LEASE_MS:
    import jarvis._redis_registry as _registry

    _original_init = _registry.RedisRegistry.__init__

    def _init_with_lease(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("lease_ms", int(_LEASE_MS))
        _original_init(self, *args, **kwargs)

    _registry.RedisRegistry.__init__ = _init_with_lease  # type: ignore[method-assign]
