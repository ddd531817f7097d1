"""The SQL layer: URL selection, schema versioning (upgrade, refuse newer), per-test isolation."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from nanobrain.infrastructure.data.database import Database, DatabaseError, Migration
from nanobrain.infrastructure.data.history import ConversationHistory
from nanobrain.llm.messages import Message


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


async def test_a_damaged_sqlite_file_is_a_clear_error_that_names_it(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    async with Database(f"sqlite:///{path}") as db:
        history = ConversationHistory(db)
        await history.append_many("s", [Message.user(f"{i} " + "words " * 500) for i in range(40)])
        await history.aclose()
        async with db.connect() as connection:
            root = (
                await connection.execute(text("SELECT rootpage FROM sqlite_master WHERE name = 'history_messages'"))
            ).scalar_one()
            page_size = (await connection.execute(text("PRAGMA page_size"))).scalar_one()
    assert not path.with_name("chat.db-wal").exists()  # closing checkpointed everything into the file
    with path.open("r+b") as file:  # a disk error garbles the messages table's first page
        file.seek((root - 1) * page_size)
        file.write(b"\xa5" * page_size)

    async with Database(f"sqlite:///{path}") as db:
        history = ConversationHistory(db)
        reads = {
            "messages (the driver directly)": lambda: history.messages("s"),
            "get (through SQLAlchemy)": lambda: history.get("s", 1),
            "append": lambda: history.append("s", Message.user("more")),
        }
        for what, read in reads.items():
            with pytest.raises(DatabaseError) as info:
                await read()
            message = str(info.value)
            assert f"the SQLite database {path} is damaged (database disk image is malformed)" in message, what
            assert f"sqlite3 {path} .recover" in message and "[SQL:" not in message, what
        await history.aclose()


def test_damaged_postgresql_data_names_the_server_without_its_password() -> None:
    import asyncpg

    db = Database("postgresql://ada:s3cret@127.0.0.1:5432/test")
    error = db.explain(asyncpg.exceptions.DataCorruptedError("invalid page in block 7 of relation base/1/2"))
    assert error is not None
    message = str(error)
    assert "postgresql+asyncpg://ada:***@127.0.0.1:5432/test reports damaged data" in message
    assert "invalid page in block 7" in message and "s3cret" not in message
    assert db.explain(asyncpg.exceptions.UniqueViolationError("duplicate key")) is None
