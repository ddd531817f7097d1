"""Fixtures for the persistence tests: SQLite always; PostgreSQL and Redis when reachable.

Each test gets its own SQLite file, its own PostgreSQL schema (dropped afterwards) and its own
Redis key prefix (deleted afterwards). Unreachable services skip, or fail under
NANOBRAIN_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import require

from nanobrain.infrastructure.data.database import Database

POSTGRES_URL = os.environ.get("NANOBRAIN_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("NANOBRAIN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def unique_name(prefix: str = "nbtest") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    yield db
    await db.aclose()


@pytest.fixture
async def postgres_db() -> AsyncIterator[Database]:
    require(_reachable("127.0.0.1", 5432), "PostgreSQL is not reachable on 127.0.0.1:5432")
    db = Database(POSTGRES_URL, schema=unique_name())
    yield db
    await db.drop_schema()
    await db.aclose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """Runs the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
        yield db
        await db.aclose()
        return
    require(_reachable("127.0.0.1", 5432), "PostgreSQL is not reachable on 127.0.0.1:5432")
    db = Database(POSTGRES_URL, schema=unique_name())
    yield db
    await db.drop_schema()
    await db.aclose()


@pytest.fixture
async def redis_client() -> AsyncIterator[Any]:
    """A `redis.asyncio.Redis` client; keys the test creates must start with `redis_prefix`."""
    require(_reachable("127.0.0.1", 6379), "Redis is not reachable on 127.0.0.1:6379")
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_prefix(redis_client: Any) -> AsyncIterator[str]:
    prefix = unique_name("nbtest") + ":"
    yield prefix
    keys = [key async for key in redis_client.scan_iter(match=prefix + "*")]
    if keys:
        await redis_client.delete(*keys)
