"""The service registry in one table of a `Database` (PostgreSQL, or SQLite for one machine).

Each row holds a record and its absolute expiry in seconds of the database server's clock (so
the replicas' clocks need not agree); reads skip expired rows and each announce deletes them, so
a crashed process's row is ignored once its TTL has passed and removed soon after.
"""

from __future__ import annotations

import json
from typing import Any

from ..data.database import Database, Migration
from .registry import Clock, ServiceRecord, ServiceRegistry, _sorted, check_ttl

_TABLE = "nanobrain_services"
_tables: dict[str, Any] = {}


def _services_table() -> Any:
    # Built on first use: importing this module does not import SQLAlchemy.
    if not _tables:
        from sqlalchemy import Column, Float, Index, MetaData, String, Table, Text

        _tables[_TABLE] = Table(
            _TABLE,
            MetaData(),
            Column("id", String(255), primary_key=True),
            Column("type", String(255), nullable=False),
            Column("name", String(255), nullable=False),
            Column("url", Text, nullable=False),
            Column("metadata", Text, nullable=False),
            Column("expires_at", Float, nullable=False),
            Index("ix_nanobrain_services_type_name", "type", "name"),
            Index("ix_nanobrain_services_expires_at", "expires_at"),
        )
    return _tables[_TABLE]


async def _create_services_table(connection: Any) -> None:
    table = _services_table()
    await connection.run_sync(lambda sync: table.create(sync, checkfirst=True))


SERVICES_MIGRATIONS = [Migration(1, _create_services_table, "service registry table")]


#: The database server's time in Unix seconds, as SQL.
_SERVER_NOW = {
    "postgresql": "CAST(extract(epoch FROM clock_timestamp()) AS double precision)",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


class SqlServiceRegistry(ServiceRegistry):
    """Services in the `nanobrain_services` table; time is the database server's (or `clock`, for tests)."""

    def __init__(
        self, database: Database | str, *, clock: Clock | None = None, owns_database: bool | None = None
    ) -> None:
        if isinstance(database, str):
            database = Database(database)
            owns_database = True if owns_database is None else owns_database
        self.database = database
        self.url = database.safe_url
        self.clock = clock
        self._owns_database = bool(owns_database)
        self._statements: dict[str, Any] = {}

    async def _prepare(self) -> dict[str, Any]:
        if not self._statements:
            await self.database.migrate("services", SERVICES_MIGRATIONS)
            self._statements = self._build_statements()
        return self._statements

    def _build_statements(self) -> dict[str, Any]:
        from sqlalchemy import Float, bindparam, delete, literal_column, select
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = self.database.dialect
        insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        now: Any = bindparam("now", type_=Float) if self.clock else literal_column(_SERVER_NOW[dialect], Float)
        t = _services_table()
        c = t.c
        upsert = insert(t).values(
            {k: bindparam(k) for k in ("id", "type", "name", "url", "metadata")}
            | {"expires_at": now + bindparam("ttl", type_=Float)}
        )
        upsert = upsert.on_conflict_do_update(
            index_elements=[c.id],
            set_={k: upsert.excluded[k] for k in ("type", "name", "url", "metadata", "expires_at")},
        )
        live = c.expires_at > now
        columns = (c.id, c.type, c.name, c.url, c.metadata, c.expires_at)
        return {
            "upsert": upsert,
            "purge": delete(t).where(c.expires_at <= now),
            "deregister": delete(t).where(c.id == bindparam("id"), live),
            "all": select(*columns).where(live),
            "type": select(*columns).where(live, c.type == bindparam("type")),
            "type_name": select(*columns).where(live, c.type == bindparam("type"), c.name == bindparam("name")),
            "name": select(*columns).where(live, c.name == bindparam("name")),
        }

    async def announce(self, record: ServiceRecord, ttl: float) -> None:
        metadata = json.loads(record.to_json())["metadata"]  # checks that it is JSON
        statements = await self._prepare()
        row = {
            "id": record.id, "type": record.type, "name": record.name, "url": record.url,
            "metadata": json.dumps(metadata), "ttl": check_ttl(ttl), **self._now(),
        }  # fmt: skip
        async with self.database.begin() as connection:
            await connection.execute(statements["purge"], self._now())
            await connection.execute(statements["upsert"], row)

    async def deregister(self, service_id: str) -> bool:
        statements = await self._prepare()
        async with self.database.begin() as connection:
            result = await connection.execute(statements["deregister"], {"id": service_id, **self._now()})
        return bool(result.rowcount)

    async def discover(self, type: str | None = None, name: str | None = None) -> list[ServiceRecord]:
        statements = await self._prepare()
        which = "all" if type is None and name is None else "name" if type is None else "type_name" if name else "type"
        params = {"type": type, "name": name, **self._now()}
        async with self.database.connect() as connection:
            rows = (await connection.execute(statements[which], params)).all()
        # Sorted here: the databases' collations would order names differently.
        return _sorted([ServiceRecord(r.type, r.name, r.url, json.loads(r.metadata), r.id, r.expires_at) for r in rows])

    def _now(self) -> dict[str, float]:
        """The `now` parameter when a clock was given (otherwise the statements read the server's)."""
        return {"now": self.clock()} if self.clock else {}

    async def aclose(self) -> None:
        if self._owns_database:
            await self.database.aclose()

    def __repr__(self) -> str:
        return f"SqlServiceRegistry({self.url!r})"
