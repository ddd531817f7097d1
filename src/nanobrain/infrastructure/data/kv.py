"""Key-value stores: one async contract, implemented in memory, on SQL and on Redis.

Keys are strings, values are bytes. A value may carry a time to live; an expired value reads as
absent. `open_store(url)` picks the implementation from a URL, so configuration can name a store
the same way it names a database. The partitioned store (`partitioned.py`) spreads keys over
several of these.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ...core.clock import WALL_CLOCK, Clock
from ...core.closing import AsyncClosing
from ...core.errors import NanoBrainError
from ..security.redaction import mask_url, redact
from .database import Database, Migration


class StoreError(NanoBrainError):
    """A key-value store cannot be used as asked (unreachable, bad URL, bad value)."""


class KeyValueStore(AsyncClosing, ABC):
    """The contract every store keeps (the contract tests run it against each implementation)."""

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value, or None when the key is absent or expired."""

    @abstractmethod
    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store `value`; with `ttl` (seconds) it expires after that long."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove the key; True when it was present."""

    @abstractmethod
    async def keys(self, prefix: str = "") -> list[str]:
        """Every live key starting with `prefix`, sorted."""

    @abstractmethod
    async def ttl(self, key: str) -> float | None:
        """Seconds until the key expires, or None when it never does (or is absent)."""

    async def exists(self, key: str) -> bool:
        return await self.get(key) is not None

    async def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of the keys that are present (absent keys are left out)."""
        found: dict[str, bytes] = {}
        for key in keys:
            value = await self.get(key)
            if value is not None:
                found[key] = value
        return found

    async def set_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        for key, value in items.items():
            check_item(key, value, ttl)  # all or nothing: refuse before writing any
        for key, value in items.items():
            await self.set(key, value, ttl=ttl)

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove the keys; returns how many were present."""
        return sum([await self.delete(key) for key in keys])

    async def aclose(self) -> None:
        """Release connections the store opened itself."""


def check_item(key: Any, value: Any, ttl: float | None) -> None:
    """Reject what no store can keep, with the same message everywhere."""
    if not isinstance(key, str) or not key:
        raise StoreError(f"a key must be a non-empty string, not {key!r}")
    if not isinstance(value, bytes | bytearray | memoryview):
        raise StoreError(f"value for key {key!r} must be bytes, not {type(value).__name__}")
    if ttl is not None and not ttl > 0:
        raise StoreError(f"ttl for key {key!r} must be a positive number of seconds, not {ttl!r}")


# -- memory --------------------------------------------------------------------------------
class MemoryKeyValueStore(KeyValueStore):
    """A dict with expiry: for tests and single-process use. Nothing survives the process."""

    def __init__(self, *, clock: Clock = WALL_CLOCK) -> None:
        self.clock = clock
        self._data: dict[str, tuple[bytes, float | None]] = {}

    def _live(self, key: str) -> tuple[bytes, float | None] | None:
        entry = self._data.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= self.clock.now():
            del self._data[key]
            return None
        return entry

    async def get(self, key: str) -> bytes | None:
        entry = self._live(key)
        return None if entry is None else entry[0]

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        check_item(key, value, ttl)
        self._data[key] = (bytes(value), None if ttl is None else self.clock.now() + ttl)

    async def delete(self, key: str) -> bool:
        present = self._live(key) is not None
        self._data.pop(key, None)
        return present

    async def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in list(self._data) if k.startswith(prefix) and self._live(k) is not None)

    async def ttl(self, key: str) -> float | None:
        entry = self._live(key)
        return None if entry is None or entry[1] is None else entry[1] - self.clock.now()

    def __repr__(self) -> str:
        return f"MemoryKeyValueStore({len(self._data)} keys)"


# -- SQL -----------------------------------------------------------------------------------
_TABLE = "nanobrain_kv"
_tables: dict[str, Any] = {}


def _kv_table() -> Any:
    # Built on first use so that importing this module does not import SQLAlchemy.
    if not _tables:
        from sqlalchemy import Column, Float, LargeBinary, MetaData, String, Table, Text

        _tables[_TABLE] = Table(
            _TABLE,
            MetaData(),
            Column("namespace", String(255), primary_key=True),
            Column("key", Text, primary_key=True),
            Column("value", LargeBinary, nullable=False),
            # Absolute expiry in the store clock's seconds; NULL never expires.
            Column("expires_at", Float, nullable=True),
        )
    return _tables[_TABLE]


async def _create_kv_table(connection: Any) -> None:
    table = _kv_table()
    await connection.run_sync(lambda sync: table.create(sync, checkfirst=True))


KV_MIGRATIONS = [Migration(1, _create_kv_table, "key-value table")]


def _escape_like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SQLKeyValueStore(KeyValueStore):
    """Keys in one table of a `Database` (SQLite or PostgreSQL), kept apart by `namespace`.

    Expiry is a column checked on every read, so an expired value is never returned even
    before `purge_expired()` removes it. `clock` is wall time by default (expiry must mean the
    same in every process); tests pass a virtual one.
    """

    def __init__(
        self,
        database: Database | str,
        namespace: str = "default",
        *,
        clock: Clock = WALL_CLOCK,
        owns_database: bool | None = None,
    ) -> None:
        if isinstance(database, str):
            database = Database(database)
            owns_database = True if owns_database is None else owns_database
        self.database = database
        self.namespace = namespace
        self.clock = clock
        self._owns_database = bool(owns_database)
        self._ready = False
        self._statements: dict[str, Any] = {}

    async def _prepare(self) -> dict[str, Any]:
        if not self._ready:
            await self.database.migrate("kv", KV_MIGRATIONS)
            self._statements = self._build_statements()
            self._ready = True
        return self._statements

    def _build_statements(self) -> dict[str, Any]:
        # Built once with bind parameters, so SQLAlchemy compiles each of them only once.
        from sqlalchemy import bindparam, delete, or_, select
        from sqlalchemy.dialects import postgresql, sqlite

        insert: Any = postgresql.insert if self.database.dialect == "postgresql" else sqlite.insert
        t = _kv_table()
        c = t.c
        live = or_(c.expires_at.is_(None), c.expires_at > bindparam("now"))
        mine = c.namespace == bindparam("ns")
        upsert = insert(t)
        upsert = upsert.on_conflict_do_update(
            index_elements=[c.namespace, c.key],
            set_={"value": upsert.excluded.value, "expires_at": upsert.excluded.expires_at},
        )
        return {
            "get": select(c.value).where(mine, c.key == bindparam("k"), live),
            "get_many": select(c.key, c.value).where(mine, c.key.in_(bindparam("ks", expanding=True)), live),
            "ttl": select(c.expires_at).where(mine, c.key == bindparam("k"), live),
            "keys": select(c.key).where(mine, c.key.like(bindparam("pattern"), escape="\\"), live),
            "upsert": upsert,
            "delete": delete(t).where(mine, c.key == bindparam("k")),
            "delete_live": delete(t).where(mine, c.key == bindparam("k"), live),
            "delete_many": delete(t).where(mine, c.key.in_(bindparam("ks", expanding=True)), live),
            "purge": delete(t).where(mine, c.expires_at <= bindparam("now")),
        }

    async def get(self, key: str) -> bytes | None:
        statements = await self._prepare()
        async with self.database.connect() as connection:
            row = (
                await connection.execute(statements["get"], {"ns": self.namespace, "k": key, "now": self.clock.now()})
            ).first()
        return None if row is None else bytes(row[0])

    async def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        statements = await self._prepare()
        async with self.database.connect() as connection:
            rows = (
                await connection.execute(
                    statements["get_many"], {"ns": self.namespace, "ks": wanted, "now": self.clock.now()}
                )
            ).all()
        found = {row[0]: bytes(row[1]) for row in rows}
        return {k: found[k] for k in wanted if k in found}

    def _row(self, key: str, value: bytes, ttl: float | None) -> dict[str, Any]:
        check_item(key, value, ttl)
        expires = None if ttl is None else self.clock.now() + ttl
        return {"namespace": self.namespace, "key": key, "value": bytes(value), "expires_at": expires}

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        row = self._row(key, value, ttl)
        statements = await self._prepare()
        async with self.database.begin() as connection:
            await connection.execute(statements["upsert"], [row])

    async def set_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        rows = [self._row(k, v, ttl) for k, v in items.items()]
        if not rows:
            return
        statements = await self._prepare()
        async with self.database.begin() as connection:
            await connection.execute(statements["upsert"], rows)

    async def delete(self, key: str) -> bool:
        statements = await self._prepare()
        params = {"ns": self.namespace, "k": key, "now": self.clock.now()}
        async with self.database.begin() as connection:
            deleted = (await connection.execute(statements["delete_live"], params)).rowcount
            if not deleted:  # an expired row may linger: remove it, but it was not "present"
                await connection.execute(statements["delete"], params)
        return bool(deleted)

    async def delete_many(self, keys: Iterable[str]) -> int:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return 0
        statements = await self._prepare()
        async with self.database.begin() as connection:
            result = await connection.execute(
                statements["delete_many"], {"ns": self.namespace, "ks": wanted, "now": self.clock.now()}
            )
        return int(result.rowcount)

    async def keys(self, prefix: str = "") -> list[str]:
        statements = await self._prepare()
        params = {"ns": self.namespace, "pattern": _escape_like(prefix) + "%", "now": self.clock.now()}
        async with self.database.connect() as connection:
            rows = (await connection.execute(statements["keys"], params)).all()
        # Sorted here: the databases' collations would order keys differently.
        return sorted(row[0] for row in rows)

    async def ttl(self, key: str) -> float | None:
        statements = await self._prepare()
        now = self.clock.now()
        async with self.database.connect() as connection:
            row = (await connection.execute(statements["ttl"], {"ns": self.namespace, "k": key, "now": now})).first()
        return None if row is None or row[0] is None else row[0] - now

    async def purge_expired(self) -> int:
        """Delete expired rows (reads already ignore them); returns how many went."""
        statements = await self._prepare()
        async with self.database.begin() as connection:
            result = await connection.execute(statements["purge"], {"ns": self.namespace, "now": self.clock.now()})
        return int(result.rowcount)

    async def aclose(self) -> None:
        if self._owns_database:
            await self.database.aclose()

    def __repr__(self) -> str:
        return f"SQLKeyValueStore({self.database!r}, namespace={self.namespace!r})"


# -- Redis ---------------------------------------------------------------------------------
def _escape_glob(text: str) -> str:
    for special in ("\\", "*", "?", "[", "]"):
        text = text.replace(special, "\\" + special)
    return text


class RedisKeyValueStore(KeyValueStore):
    """Keys in Redis under `prefix`, through `redis.asyncio`; expiry is Redis's own.

    Pass a URL (the store opens and closes its client) or a `redis.asyncio.Redis` client
    created without `decode_responses` (values are bytes). `url` says where it connects, with
    the password masked.
    """

    def __init__(self, url_or_client: Any = "redis://127.0.0.1:6379/0", *, prefix: str = "nanobrain:") -> None:
        from ...optional import require

        redis = require("redis.asyncio", extra="storage", purpose="a Redis store")
        from redis.exceptions import AuthenticationError
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        # Typed loosely: redis-py's stubs allow str answers, but these clients never decode.
        self.client: Any
        if isinstance(url_or_client, str):
            self.url = mask_url(url_or_client)
            try:
                self.client = redis.Redis.from_url(url_or_client)
            except ValueError as exc:  # a bad port, scheme or address
                raise StoreError(
                    f"invalid Redis URL {self.url!r}: {redact(str(exc))}. Use redis://[USER:PASSWORD@]HOST:PORT/DB"
                ) from None
            self._owns_client = True
        else:
            self.client = url_or_client
            kwargs = getattr(getattr(url_or_client, "connection_pool", None), "connection_kwargs", {})
            self.url = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
            if kwargs.get("decode_responses"):
                raise StoreError("RedisKeyValueStore needs a client without decode_responses (values are bytes)")
            self._owns_client = False
        self.prefix = prefix
        self._unreachable = (RedisConnectionError, RedisTimeoutError, OSError)
        self._refused = AuthenticationError

    def _fail(self, exc: BaseException) -> StoreError:
        said = redact(str(exc))
        if isinstance(exc, self._refused):
            return StoreError(
                f"Redis at {self.url} refused the login ({said}): check the user name and password in the "
                "URL (redis://USER:PASSWORD@HOST:PORT/DB, or redis://HOST:PORT/DB for a server without auth)"
            )
        return StoreError(f"cannot reach Redis at {self.url}: {said}")

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self.client.get(self.prefix + key)
        except self._unreachable as exc:
            raise self._fail(exc) from exc
        return value

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        check_item(key, value, ttl)
        try:
            await self.client.set(self.prefix + key, bytes(value), px=_millis(ttl))
        except self._unreachable as exc:
            raise self._fail(exc) from exc

    async def delete(self, key: str) -> bool:
        try:
            return bool(await self.client.delete(self.prefix + key))
        except self._unreachable as exc:
            raise self._fail(exc) from exc

    async def exists(self, key: str) -> bool:
        try:
            return bool(await self.client.exists(self.prefix + key))
        except self._unreachable as exc:
            raise self._fail(exc) from exc

    async def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        try:
            values = await self.client.mget([self.prefix + k for k in wanted])
        except self._unreachable as exc:
            raise self._fail(exc) from exc
        return {k: v for k, v in zip(wanted, values, strict=True) if v is not None}

    async def set_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        for key, value in items.items():
            check_item(key, value, ttl)
        if not items:
            return
        try:
            # One transaction: either every item is written or none.
            async with self.client.pipeline(transaction=True) as pipe:
                for key, value in items.items():
                    pipe.set(self.prefix + key, bytes(value), px=_millis(ttl))
                await pipe.execute()
        except self._unreachable as exc:
            raise self._fail(exc) from exc

    async def delete_many(self, keys: Iterable[str]) -> int:
        wanted = [self.prefix + k for k in dict.fromkeys(keys)]
        if not wanted:
            return 0
        try:
            return int(await self.client.delete(*wanted))
        except self._unreachable as exc:
            raise self._fail(exc) from exc

    async def keys(self, prefix: str = "") -> list[str]:
        start = len(self.prefix)
        pattern = _escape_glob(self.prefix + prefix) + "*"
        try:
            found = {key[start:].decode() async for key in self.client.scan_iter(match=pattern, count=500)}
        except self._unreachable as exc:
            raise self._fail(exc) from exc
        return sorted(found)

    async def ttl(self, key: str) -> float | None:
        try:
            millis = await self.client.pttl(self.prefix + key)
        except self._unreachable as exc:
            raise self._fail(exc) from exc
        return None if millis < 0 else millis / 1000  # -1: no expiry, -2: absent

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    def __repr__(self) -> str:
        return f"RedisKeyValueStore({self.url!r}, prefix={self.prefix!r})"


def _millis(ttl: float | None) -> int | None:
    return None if ttl is None else max(1, round(ttl * 1000))


# -- by URL --------------------------------------------------------------------------------
def open_store(
    url: str, *, namespace: str = "default", prefix: str = "nanobrain:", base_dir: Path | None = None
) -> KeyValueStore:
    """A store selected by URL.

    `sqlite+aiosqlite:///file.db` (relative to `base_dir` when given), `postgresql+asyncpg://user@host/db`
    (`?schema=name` keeps tables in a schema), `redis://host:6379/0` (`?prefix=app:` sets the key
    prefix), or `memory://`.
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        prefix = query.pop("prefix", prefix)
        return RedisKeyValueStore(urlunsplit(parts._replace(query=urlencode(query))), prefix=prefix)
    if scheme == "memory":
        return MemoryKeyValueStore()
    if scheme.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:" and base_dir is not None and not Path(path).is_absolute():
            url = f"{url.split('///', 1)[0]}///{base_dir / path}"
        return SQLKeyValueStore(Database(url), namespace, owns_database=True)
    if scheme.startswith("postgresql"):
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", None)
        plain = urlunsplit(parts._replace(query=urlencode(query)))
        return SQLKeyValueStore(Database(plain, schema=schema), namespace, owns_database=True)
    raise StoreError(
        f"unsupported store URL {mask_url(url)!r}: use sqlite+aiosqlite:///PATH, postgresql+asyncpg://USER@HOST/DB, "
        "redis://HOST:PORT/DB or memory://"
    )
