"""The service registry backends for tests: memory, SQLite, PostgreSQL and Redis (the real services).

A test module's fixture yields from `open_backend(kind, tmp_path)`. Each test gets its own SQLite
file, PostgreSQL schema or Redis key prefix, removed afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from tests.conftest import require
from tests.infrastructure.conftest import POSTGRES_URL, REDIS_URL, _reachable, unique_name

from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.services import (
    MemoryServiceRegistry,
    RedisServiceRegistry,
    ServiceRegistry,
    SqlServiceRegistry,
)


class Backend:
    """A registry for the test, and the URL another process opens the same registry with."""

    def __init__(self, kind: str, registry: ServiceRegistry, url: str) -> None:
        self.kind = kind
        self.registry = registry
        self.url = url


async def open_backend(kind: str, tmp_path: Path) -> AsyncIterator[Backend]:
    if kind == "memory":
        yield Backend(kind, MemoryServiceRegistry(), "memory://")
    elif kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'services.db'}"
        async with SqlServiceRegistry(Database(url), owns_database=True) as registry:
            yield Backend(kind, registry, url)
    elif kind == "postgresql":
        require(_reachable("127.0.0.1", 5432), "PostgreSQL is not reachable on 127.0.0.1:5432")
        db = Database(POSTGRES_URL, schema=unique_name())
        try:
            yield Backend(kind, SqlServiceRegistry(db), f"{POSTGRES_URL}?schema={db.schema}")
        finally:
            await db.drop_schema()
            await db.aclose()
    else:
        require(_reachable("127.0.0.1", 6379), "Redis is not reachable on 127.0.0.1:6379")
        prefix = unique_name() + ":"
        async with RedisServiceRegistry(REDIS_URL, prefix=prefix) as registry:
            try:
                yield Backend(kind, registry, f"{REDIS_URL}?prefix={prefix}")
            finally:
                keys = [key async for key in registry.client.scan_iter(match=prefix + "*")]
                if keys:
                    await registry.client.delete(*keys)
