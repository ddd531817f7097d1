"""The key-value contract, run against every store: memory, SQL on SQLite and PostgreSQL, Redis, partitioned.

Time is virtual: SQL and memory stores read a VirtualClock; for Redis, `advance` shortens every
key's remaining TTL on the server by the same amount (Redis deletes a key whose TTL runs out).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import require
from tests.infrastructure.conftest import POSTGRES_URL, REDIS_URL, _reachable, unique_name

from nanobrain import VirtualClock
from nanobrain.infrastructure.data.database import Database, DatabaseError
from nanobrain.infrastructure.data.kv import (
    KeyValueStore,
    MemoryKeyValueStore,
    RedisKeyValueStore,
    SQLKeyValueStore,
    StoreError,
    open_store,
)
from nanobrain.infrastructure.data.partitioned import PartitionedStore


@dataclass
class Subject:
    store: KeyValueStore
    advance: Callable[[float], Awaitable[None]]
    #: A second store over the same data, as another process would open it (None: nothing persists).
    reopen: Callable[[], KeyValueStore] | None


def _redis_advance(client: Any, prefix: str) -> Callable[[float], Awaitable[None]]:
    async def advance(seconds: float) -> None:
        async for key in client.scan_iter(match=prefix + "*"):
            remaining = await client.pttl(key)
            if remaining >= 0:
                left = remaining - int(seconds * 1000)
                if left <= 0:
                    await client.delete(key)
                else:
                    await client.pexpire(key, left)

    return advance


@asynccontextmanager
async def open_subject(kind: str, tmp_path: Path) -> AsyncIterator[Subject]:
    clock = VirtualClock(start=1_000_000.0)
    cleanup: list[Callable[[], Awaitable[Any]]] = []
    if kind == "memory":
        yield Subject(MemoryKeyValueStore(clock=clock), clock.advance, None)
        return
    if kind in ("sqlite", "postgresql"):
        if kind == "sqlite":
            db = Database(f"sqlite+aiosqlite:///{tmp_path / 'kv.db'}")
        else:
            require(_reachable("127.0.0.1", 5432), "PostgreSQL is not reachable on 127.0.0.1:5432")
            db = Database(POSTGRES_URL, schema=unique_name())
        store = SQLKeyValueStore(db, "contract", clock=clock)
        opened: list[Database] = []

        def reopen_sql() -> KeyValueStore:
            other = Database(db.url, schema=db.schema)
            opened.append(other)
            return SQLKeyValueStore(other, "contract", clock=clock)

        yield Subject(store, clock.advance, reopen_sql)
        for other in opened:
            await other.aclose()
        if kind == "postgresql":
            await db.drop_schema()
        await db.aclose()
        return
    if kind == "redis":
        require(_reachable("127.0.0.1", 6379), "Redis is not reachable on 127.0.0.1:6379")
        import redis.asyncio as redis

        client = redis.Redis.from_url(REDIS_URL)
        prefix = unique_name() + ":"
        clients: list[RedisKeyValueStore] = []

        def reopen_redis() -> KeyValueStore:
            other = RedisKeyValueStore(REDIS_URL, prefix=prefix)
            clients.append(other)
            return other

        yield Subject(RedisKeyValueStore(client, prefix=prefix), _redis_advance(client, prefix), reopen_redis)
        for other in clients:
            await other.aclose()
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        return
    # Partitioned over two SQLite namespaces and an in-memory store, sharing one clock.
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'parts.db'}")
    memory = MemoryKeyValueStore(clock=clock)

    def parts() -> dict[str, KeyValueStore]:
        return {
            "a": SQLKeyValueStore(db, "part-a", clock=clock),
            "b": SQLKeyValueStore(db, "part-b", clock=clock),
            "c": memory,
        }

    cleanup.append(db.aclose)
    yield Subject(PartitionedStore(parts()), clock.advance, lambda: PartitionedStore(parts()))
    for step in cleanup:
        await step()


@pytest.fixture(params=["memory", "sqlite", "postgresql", "redis", "partitioned"])
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Subject]:
    async with open_subject(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture(params=["sqlite", "postgresql", "redis", "partitioned"])
async def durable(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Subject]:
    """The stores whose data outlives the store object."""
    async with open_subject(request.param, tmp_path) as opened:
        yield opened


async def test_set_get_overwrite_and_absent(subject: Subject) -> None:
    store = subject.store
    assert await store.get("missing") is None
    await store.set("greeting", b"hello")
    assert await store.get("greeting") == b"hello"
    await store.set("greeting", b"hello again")
    assert await store.get("greeting") == b"hello again"
    # Binary data, the empty value and non-ASCII keys come back exactly.
    await store.set("blob", bytes(range(256)))
    await store.set("empty", b"")
    await store.set("clé/ünï", b"\x00\xff")
    assert await store.get("blob") == bytes(range(256))
    assert await store.get("empty") == b""
    assert await store.exists("empty")
    assert await store.get("clé/ünï") == b"\x00\xff"


async def test_delete_and_exists(subject: Subject) -> None:
    store = subject.store
    await store.set("k", b"v")
    assert await store.exists("k")
    assert await store.delete("k") is True
    assert await store.delete("k") is False
    assert not await store.exists("k")
    assert await store.get("k") is None


async def test_keys_by_prefix_sorted_and_literal(subject: Subject) -> None:
    store = subject.store
    for key in ["user:2", "user:10", "user:1", "users", "other", "50%_off", "50x_off", "a*b", "a[b]", "a?c"]:
        await store.set(key, b"x")
    assert await store.keys("user:") == ["user:1", "user:10", "user:2"]
    assert await store.keys("user") == ["user:1", "user:10", "user:2", "users"]
    # Wildcard characters of SQL LIKE and Redis globs are plain characters in a prefix.
    assert await store.keys("50%") == ["50%_off"]
    assert await store.keys("50%_") == ["50%_off"]
    assert await store.keys("a*") == ["a*b"]
    assert await store.keys("a[") == ["a[b]"]
    assert await store.keys("a?") == ["a?c"]
    assert len(await store.keys()) == 10


async def test_many_at_once(subject: Subject) -> None:
    store = subject.store
    items = {f"item:{i}": str(i).encode() for i in range(25)}
    await store.set_many(items)
    found = await store.get_many([*items, "item:missing"])
    assert found == items
    assert list(found) == list(items)  # in the order asked
    assert await store.get_many([]) == {}
    assert await store.delete_many(["item:0", "item:1", "item:missing"]) == 2
    assert await store.get("item:0") is None
    assert len(await store.keys("item:")) == 23


async def test_ttl_expiry(subject: Subject) -> None:
    store = subject.store
    await store.set("short", b"1", ttl=10)
    await store.set("long", b"2", ttl=100)
    await store.set("forever", b"3")
    remaining = await store.ttl("short")
    assert remaining is not None and 9 < remaining <= 10
    assert await store.ttl("forever") is None
    assert await store.ttl("missing") is None

    await subject.advance(11)
    assert await store.get("short") is None
    assert not await store.exists("short")
    assert await store.delete("short") is False
    assert await store.get_many(["short", "long"]) == {"long": b"2"}
    assert await store.keys() == ["forever", "long"]
    assert await store.get("forever") == b"3"
    remaining = await store.ttl("long")
    assert remaining is not None and 88 < remaining <= 89

    await subject.advance(100)
    assert await store.get("long") is None
    assert await store.get("forever") == b"3"


async def test_set_without_ttl_clears_expiry_and_set_many_with_ttl(subject: Subject) -> None:
    store = subject.store
    await store.set("k", b"old", ttl=5)
    await store.set("k", b"new")
    await store.set_many({"m1": b"1", "m2": b"2"}, ttl=5)
    await subject.advance(6)
    assert await store.get("k") == b"new"
    assert await store.get_many(["m1", "m2"]) == {}


async def test_bad_input_is_a_clear_error(subject: Subject) -> None:
    store = subject.store
    with pytest.raises(StoreError, match="must be bytes, not str"):
        await store.set("k", "text")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="ttl for key 'k' must be a positive"):
        await store.set("k", b"v", ttl=0)
    with pytest.raises(StoreError, match="non-empty string"):
        await store.set("", b"v")
    with pytest.raises(StoreError, match="must be bytes"):
        await store.set_many({"a": b"1", "b": 2})  # type: ignore[dict-item]
    # Nothing was written by the rejected calls.
    assert await store.keys() == []


async def test_values_survive_reopening(durable: Subject) -> None:
    assert durable.reopen is not None
    await durable.store.set("durable", b"still here", ttl=1000)
    await durable.store.set("plain", b"p")
    other = durable.reopen()
    try:
        assert await other.get("durable") == b"still here"
        assert await other.get("plain") == b"p"
        assert await other.keys() == ["durable", "plain"]
    finally:
        await other.aclose()


# -- implementation specifics ---------------------------------------------------------------
async def test_sql_namespaces_are_separate(database: Database) -> None:
    one, two = SQLKeyValueStore(database, "one"), SQLKeyValueStore(database, "two")
    await one.set("k", b"1")
    await two.set("k", b"2")
    assert (await one.get("k"), await two.get("k")) == (b"1", b"2")
    assert await one.delete("k")
    assert await two.get("k") == b"2"
    assert await database.schema_version("kv") == 1


async def test_sql_purge_removes_expired_rows(sqlite_db: Database) -> None:
    clock = VirtualClock(start=100.0)
    store = SQLKeyValueStore(sqlite_db, clock=clock)
    await store.set_many({"a": b"1", "b": b"2"}, ttl=5)
    await store.set("c", b"3")
    await clock.advance(10)
    assert await store.purge_expired() == 2
    assert await store.purge_expired() == 0
    assert await store.keys() == ["c"]


async def test_redis_prefixes_are_separate(redis_client: Any, redis_prefix: str) -> None:
    one = RedisKeyValueStore(redis_client, prefix=redis_prefix + "one:")
    two = RedisKeyValueStore(redis_client, prefix=redis_prefix + "two:")
    await one.set("k", b"1")
    await two.set("k", b"2")
    assert await one.keys() == ["k"]
    assert await redis_client.get(redis_prefix + "one:k") == b"1"
    assert (await one.get("k"), await two.get("k")) == (b"1", b"2")


async def test_redis_client_that_decodes_is_refused() -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        with pytest.raises(StoreError, match="without decode_responses"):
            RedisKeyValueStore(client)
    finally:
        await client.aclose()


async def test_unreachable_redis_is_a_clear_error() -> None:
    store = RedisKeyValueStore("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(StoreError, match=r"cannot reach Redis at redis://127\.0\.0\.1:1/0"):
            await store.get("k")
    finally:
        await store.aclose()


async def test_open_store_by_url(tmp_path: Path) -> None:
    sqlite = open_store("sqlite+aiosqlite:///state.db", namespace="ns", base_dir=tmp_path)
    assert isinstance(sqlite, SQLKeyValueStore) and sqlite.namespace == "ns"
    await sqlite.set("k", b"v")
    await sqlite.aclose()
    assert (tmp_path / "state.db").exists()  # a relative path is resolved against base_dir

    pg = open_store("postgresql+asyncpg://postgres@127.0.0.1:5432/test?schema=some_schema")
    assert isinstance(pg, SQLKeyValueStore)
    assert pg.database.schema == "some_schema" and "schema=" not in pg.database.url

    red = open_store("redis://127.0.0.1:6379/0?prefix=app:")
    assert isinstance(red, RedisKeyValueStore) and red.prefix == "app:" and "prefix" not in red.url
    await red.aclose()
    assert isinstance(open_store("memory://"), MemoryKeyValueStore)

    with pytest.raises(StoreError, match="unsupported store URL 'mysql://x/y'"):
        open_store("mysql://x/y")
    with pytest.raises(DatabaseError, match="schema name"):
        open_store("postgresql+asyncpg://u@h/d?schema=Bad-Name")


def test_kv_module_does_not_import_drivers() -> None:
    import subprocess
    import sys

    code = (
        "import sys, nanobrain.infrastructure.data.kv, nanobrain.infrastructure.data.partitioned;"
        "print(sorted(m for m in ('sqlalchemy', 'redis', 'asyncpg', 'aiosqlite') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, check=True)
    assert done.stdout.strip() == "[]"
