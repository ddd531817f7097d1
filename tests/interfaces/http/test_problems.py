"""How failures become problems: providers 502/503/504, a busy database 503, secrets scrubbed."""

from __future__ import annotations

import sqlite3

import pytest

pytest.importorskip("fastapi", reason="the HTTP server needs the `server` extra")

from nanobrain.core.errors import StepError
from nanobrain.infrastructure.data.database import DatabaseError
from nanobrain.interfaces.http.problems import problem_for_failure, scrub
from nanobrain.llm.errors import ModelNotConfigured, ProviderTimeout, RateLimited, Unreachable


def wrapped(error: BaseException) -> StepError:
    """A failure as a run reports it: nested steps wrap it once per level."""
    try:
        raise error
    except BaseException as inner:
        outer = StepError("agent", inner)
        outer.__cause__ = inner
    return StepError("chat", outer)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (Unreachable("connection refused", provider="openai"), 502),
        (RateLimited("slow down", provider="openai"), 503),
        (ModelNotConfigured("set NANOBRAIN_MODEL"), 503),
        (ProviderTimeout("no answer within 30s", provider="anthropic"), 504),
        (sqlite3.OperationalError("database is locked"), 503),
        (DatabaseError("cannot reach the database at postgresql://u:***@db/x"), 503),
        (ValueError("a bug in a step"), 500),
    ],
)
def test_failures_map_to_statuses(error: BaseException, status: int) -> None:
    problem = problem_for_failure(wrapped(error))
    assert problem.status == status
    assert str(error).split(":")[0] in problem.detail
    if status == 503 and isinstance(error, sqlite3.Error | DatabaseError):
        assert problem.headers["Retry-After"] == "1"


def test_secrets_are_scrubbed_from_reasons() -> None:
    text = scrub("HTTP 401 (key sk-abcdef1234567890, Bearer eyJhbGciOi.x.y, https://u:pw@h/x, api_key=hunter2)")
    for secret in ("abcdef1234567890", "eyJhbGciOi", "pw@", "hunter2"):
        assert secret not in text
