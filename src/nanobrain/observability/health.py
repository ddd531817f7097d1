"""A health monitor: named component checks run together, each with a timeout, into one report.

    monitor = HealthMonitor()
    monitor.add("database", database_check(database))
    monitor.add("redis", redis_check("redis://127.0.0.1:6379/0"))
    monitor.add("pool summarize", pool_check(step.pool))
    report = await monitor.check()          # report.ok, report.to_dict()

A check is an async function returning a detail text (healthy) or raising (unhealthy: the error
is the detail, secrets masked). `/ready` and `nanobrain health` show the same report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..infrastructure.security.redaction import mask_url, redact

if TYPE_CHECKING:
    from ..infrastructure.data.database import Database
    from ..infrastructure.parallel.pool import ProcessorPool

Check = Callable[[], Awaitable[str | None]]


class Unhealthy(Exception):
    """Raised by a check to say what is wrong."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    detail: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "seconds": round(self.seconds, 4)}


@dataclass(frozen=True, slots=True)
class HealthReport:
    checks: dict[str, CheckResult] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.checks.values())

    @property
    def failing(self) -> list[str]:
        return [name for name, result in self.checks.items() if not result.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "unhealthy",
            "checks": {name: result.to_dict() for name, result in self.checks.items()},
        }


class HealthMonitor:
    """Runs every registered check at once; a check that hangs fails after `timeout` seconds."""

    def __init__(self, *, timeout: float = 5.0) -> None:
        if timeout <= 0:
            raise ValueError(f"a health check timeout must be positive, got {timeout}")
        self.timeout = timeout
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> HealthMonitor:
        if name in self._checks:
            raise ValueError(f"there is already a health check named {name!r}")
        self._checks[name] = check
        return self

    @property
    def names(self) -> list[str]:
        return list(self._checks)

    async def check(self) -> HealthReport:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[name]) for name in names))
        return HealthReport(dict(zip(names, results, strict=True)))

    async def _run(self, check: Check) -> CheckResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                detail = await check()
        except TimeoutError:
            return CheckResult(False, f"no answer within {self.timeout:g}s", time.perf_counter() - started)
        except Exception as exc:  # any failure is this component's state, reported, not raised
            text = str(exc) if isinstance(exc, Unhealthy) else f"{type(exc).__name__}: {exc}"
            return CheckResult(False, redact(text), time.perf_counter() - started)
        return CheckResult(True, redact(detail or "ok"), time.perf_counter() - started)


# -- checks of the components NanoBrain uses ------------------------------------------------------------
def database_check(database: Database | str) -> Check:
    """`SELECT 1` on a `Database` (or a URL; the connection is closed after each check)."""

    async def check() -> str:
        from sqlalchemy import text

        from ..infrastructure.data.database import Database

        db = Database(database) if isinstance(database, str) else database
        try:
            async with db.connect() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            if isinstance(database, str):
                await db.aclose()
        return f"{db.dialect} {db.safe_url}"

    return check


def redis_check(url: str) -> Check:
    """`PING` on Redis at `url`."""

    async def check() -> str:
        from ..optional import require

        redis = require("redis.asyncio", extra="storage", purpose="a Redis health check")

        client = redis.from_url(url)
        try:
            await client.ping()
        finally:
            await client.aclose()
        return mask_url(url)

    return check


def pool_check(pool: ProcessorPool) -> Check:
    """Healthy while at least one processor of the pool can serve."""

    async def check() -> str:
        readiness = pool.readiness()
        detail = f"{readiness['serving']} of {readiness['size']} processors serving, {readiness['queued']} queued"
        if not readiness["ready"]:
            raise Unhealthy(detail)
        return detail

    return check


def model_check(loaded: Callable[[], bool | Awaitable[bool]], label: str = "model") -> Check:
    """Healthy when `loaded()` says the model is loaded (for example the server's warm-up flag)."""

    async def check() -> str:
        result = loaded()
        if not isinstance(result, bool):
            result = await result
        if not result:
            raise Unhealthy(f"{label} is not loaded")
        return f"{label} loaded"

    return check


def http_check(url: str, *, headers: dict[str, str] | None = None) -> Check:
    """A remote agent or server answers `GET url` with a status below 400."""

    async def check() -> str:
        import httpx

        async with httpx.AsyncClient(timeout=None) as client:
            response = await client.get(url, headers=headers)
        if response.status_code >= 400:
            raise Unhealthy(f"{mask_url(url)} answered {response.status_code}")
        return f"{mask_url(url)} answered {response.status_code}"

    return check


__all__ = [
    "Check",
    "CheckResult",
    "HealthMonitor",
    "HealthReport",
    "Unhealthy",
    "database_check",
    "http_check",
    "model_check",
    "pool_check",
    "redis_check",
]
