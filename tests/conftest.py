"""Helpers shared by the whole test suite.

Import them with `from tests.conftest import require` (the project root is on sys.path).
"""

from __future__ import annotations

import os

import pytest

REQUIRE_SERVICES = "NANOBRAIN_REQUIRE_SERVICES"


def services_required() -> bool:
    """True in CI (`.ci/run` sets NANOBRAIN_REQUIRE_SERVICES=1): missing services are failures."""
    return os.environ.get(REQUIRE_SERVICES, "").strip() == "1"


def require(condition: bool, reason: str) -> None:
    """Skip the current test (or fixture) unless `condition` holds.

    With NANOBRAIN_REQUIRE_SERVICES=1 the test fails instead, so that CI always exercises the
    real services (PostgreSQL, Redis, the local model) and never passes by skipping them.
    """
    if condition:
        return
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_SERVICES}=1: required services must be available)", pytrace=False)
    pytest.skip(reason)
