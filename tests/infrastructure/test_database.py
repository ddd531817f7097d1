"""The SQL layer: URL selection, schema versioning (upgrade, refuse newer), per-test isolation."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from nanobrain.infrastructure.data.database import Database, DatabaseError, Migration


async def _create(connection: object) -> None:
    await connection.execute(text("CREATE TABLE notes (body TEXT)"))  # type: ignore[attr-defined]


async def _add_column(connection: object) -> None:
    await connection.execute(text("ALTER TABLE notes ADD COLUMN author TEXT"))  # type: ignore[attr-defined]


V1 = [Migration(1, _create)]
V2 = [Migration(1, _create), Migration(2, _add_column)]


async def test_migrations_upgrade_an_older_database(database: Database) -> None:
    await database.migrate("notes", V1)
    async with database.begin() as connection:
        await connection.execute(text("INSERT INTO notes (body) VALUES ('kept')"))
    assert await database.schema_version("notes") == 1

    upgraded = Database(database.url, schema=database.schema)
    try:
        await upgraded.migrate("notes", V2)
        assert await upgraded.schema_version("notes") == 2
        async with upgraded.begin() as connection:
            await connection.execute(text("INSERT INTO notes (body, author) VALUES ('new', 'ada')"))
            rows = (await connection.execute(text("SELECT body, author FROM notes ORDER BY body"))).all()
        assert [tuple(r) for r in rows] == [("kept", None), ("new", "ada")]
    finally:
        await upgraded.aclose()


async def test_a_database_from_a_newer_version_is_refused(database: Database) -> None:
    await database.migrate("notes", V2)
    older = Database(database.url, schema=database.schema)
    try:
        with pytest.raises(DatabaseError, match="schema version 2, written by a newer NanoBrain"):
            await older.migrate("notes", V1)
    finally:
        await older.aclose()


def test_bad_urls_and_schema_names_are_clear_errors() -> None:
    with pytest.raises(DatabaseError, match="unsupported database URL"):
        Database("mysql://x/y").engine  # noqa: B018
    with pytest.raises(DatabaseError, match="schema name"):
        Database("postgresql+asyncpg://u@h/d", schema="Robert'); DROP")


async def test_unreachable_postgres_is_a_clear_error() -> None:
    db = Database("postgresql+asyncpg://postgres@127.0.0.1:1/test", connect_timeout=2)
    try:
        with pytest.raises(DatabaseError, match="cannot reach the database at postgresql"):
            async with db.begin() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        await db.aclose()
