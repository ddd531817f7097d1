"""Secrets never reach a message, log or repr: URLs, keys and tokens are masked in one place."""

from __future__ import annotations

import logging

import pytest
from tests.conftest import require
from tests.infrastructure.conftest import _reachable

from nanobrain.infrastructure.cache.hierarchy import CacheHierarchy, CacheLevel
from nanobrain.infrastructure.data.database import Database, DatabaseError
from nanobrain.infrastructure.data.kv import RedisKeyValueStore, SQLKeyValueStore, StoreError, open_store
from nanobrain.infrastructure.data.partitioned import PartitionedStore
from nanobrain.infrastructure.security.redaction import mask_url, redact

SECRET = "s3cret-Pa55word"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://ada:s3cret@h:1/0?prefix=app:", "redis://ada:***@h:1/0?prefix=app:"),
        ("postgresql+asyncpg://ada:p@ss/w0rd@db:5432/app", "postgresql+asyncpg://ada:***@db:5432/app"),
        (
            "postgresql://ada@db/app?password=s3cret&sslmode=require",
            "postgresql://ada@db/app?password=***&sslmode=require",
        ),
        ("https://u:k3y@api.example/v1", "https://u:***@api.example/v1"),
        ("https://api.example/v1?api_key=k3y", "https://api.example/v1?api_key=***"),
        ("sqlite+aiosqlite:///home/ada/a:b@c/x.db", "sqlite+aiosqlite:///home/ada/a:b@c/x.db"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("ada@host", "ada@host"),
    ],
)
def test_mask_url_hides_the_password_and_keeps_where(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_redact_masks_urls_tokens_named_values_and_the_given_secrets() -> None:
    key = "sk-proj-AbCdEfGh1234567890"
    text = (
        f"Incorrect API key provided: {key}. Header was 'Authorization: Bearer {key}'; "
        'body {"api_key": "other-value-1"}; tried redis://:pw1234@h:1/0 and '
        "a truncated echo sk-proj-AbCdEf...7890; pass api_key= to the provider"
    )
    clean = redact(text, [key, None, ""])
    for leaked in (key, "other-value-1", "pw1234", "sk-proj-AbCdEf"):
        assert leaked not in clean
    assert "redis://:***@h:1/0" in clean
    assert "pass api_key= to the provider" in clean  # advice is not a secret
    assert redact("nothing secret here: 42 apples") == "nothing secret here: 42 apples"


# -- every store shows masked URLs ------------------------------------------------------------------
async def test_database_reprs_and_errors_mask_the_password() -> None:
    db = Database(f"postgresql://ada:{SECRET}@127.0.0.1:1/test", connect_timeout=2)
    assert SECRET not in repr(db) and "ada:***@127.0.0.1:1" in repr(db)
    with pytest.raises(DatabaseError) as info:
        await db.migrate("notes", [])
    await db.aclose()
    assert "cannot reach the database at postgresql+asyncpg://ada:***@127.0.0.1:1/test" in str(info.value)
    assert SECRET not in str(info.value)


def test_store_reprs_and_url_errors_mask_the_password() -> None:
    sql = open_store(f"postgresql://ada:{SECRET}@127.0.0.1:5432/test?schema=s")
    red = open_store(f"redis://:{SECRET}@127.0.0.1:6379/0?prefix=app:")
    both = PartitionedStore({"sql": sql, "redis": red})
    cache = CacheHierarchy([("L2", red), ("L3", sql)])
    for shown in (repr(sql), repr(red), repr(both), repr(cache), red.url):  # type: ignore[attr-defined]
        assert SECRET not in shown and ":***@127.0.0.1" in shown
    with pytest.raises(StoreError) as info:
        open_store(f"mysql://ada:{SECRET}@127.0.0.1/db")
    assert SECRET not in str(info.value) and "mysql://ada:***@127.0.0.1/db" in str(info.value)


async def test_a_redis_connection_error_masks_the_password(caplog: pytest.LogCaptureFixture) -> None:
    store = RedisKeyValueStore(f"redis://:{SECRET}@127.0.0.1:1/0")
    cache = CacheHierarchy([CacheLevel("redis", store)])
    try:
        with pytest.raises(StoreError) as info:
            await store.get("k")
        with caplog.at_level(logging.WARNING):
            assert await cache.get("k") is None  # a failing level is logged and skipped
    finally:
        await store.aclose()
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in str(info.value)
    assert SECRET not in str(info.value)
    assert caplog.records and SECRET not in caplog.text


async def test_a_redis_password_refused_by_the_server_is_masked() -> None:
    require(_reachable("127.0.0.1", 6379), "Redis is not reachable on 127.0.0.1:6379")
    # The test server knows no user "ada": the login is refused.
    store = RedisKeyValueStore(f"redis://ada:{SECRET}@127.0.0.1:6379/0")
    try:
        with pytest.raises(StoreError) as info:
            await store.set("k", b"v")
    finally:
        await store.aclose()
    message = str(info.value)
    assert "Redis at redis://ada:***@127.0.0.1:6379/0 refused the login" in message
    assert "check the user name and password in the URL" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("url", "error", "shown"),
    [
        (
            f"postgresql://ada:{SECRET}@db:notaport/app",
            DatabaseError,
            "invalid database URL 'postgresql+asyncpg://ada:***@db:notaport/app'",
        ),
        (
            f"sqlite+aiosqlite://ada:{SECRET}@/x.db",
            DatabaseError,
            "invalid database URL 'sqlite+aiosqlite://ada:***@/x.db'",
        ),
        (f"redis://ada:{SECRET}@cache:notaport/0", StoreError, "invalid Redis URL 'redis://ada:***@cache:notaport/0'"),
    ],
)
def test_a_malformed_url_is_a_clear_error_without_its_password(url: str, error: type[Exception], shown: str) -> None:
    with pytest.raises(error) as info:
        store = open_store(url)
        if isinstance(store, SQLKeyValueStore):
            store.database.engine  # noqa: B018
    assert shown in str(info.value) and SECRET not in str(info.value)


def test_a_malformed_sqlite_url_creates_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatabaseError, match="an SQLite URL names a file"):
        Database(f"sqlite+aiosqlite://ada:{SECRET}@/x.db").engine  # noqa: B018
    assert list(tmp_path.iterdir()) == []
