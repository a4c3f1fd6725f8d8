"""`jarvis verify-hang` inside your own tests: `verify_hang(app_or_url)` returns the verdict,
and the pytest plugin (entry point `pytest11: jarvis`) offers it as the fixture `verify_hang`.

    def test_chat_survives_overlapping_prompts(verify_hang):
        report = verify_hang(app, scenarios=["overlap"])
        assert report.passed, report.explain()

Pytest imports this package at every start, in every project that has jarvis installed:
what is heavy (the verifier, uvicorn) is imported when a run begins, not here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ..verify.options import VerifyOptions
from ..verify.results import ScenarioResult, Status
from ._report import VerifyReport
from ._run import averify_hang, verify_hang

__all__ = [
    "ScenarioResult",
    "Status",
    "VerifyOptions",
    "VerifyReport",
    "averify_hang",
    "verify_hang",
]


@pytest.fixture(name="verify_hang")
def _verify_hang_fixture() -> Callable[..., VerifyReport]:
    """`verify_hang(app_or_url, **options)`: see `jarvis_cli.testing.verify_hang`."""
    return verify_hang
