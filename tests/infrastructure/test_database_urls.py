"""Database URLs in their usual forms, and clear errors for databases and home folders that cannot be used."""

from __future__ import annotations

import re
import socket
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from tests.conftest import require

from nanobrain.core.errors import NanoBrainError
from nanobrain.infrastructure.data.database import Database, DatabaseError, Migration, with_async_driver
from nanobrain.infrastructure.data.home import HomeError, default_database_url, nanobrain_home

POSTGRES = "127.0.0.1:5432"


def need_postgres() -> None:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            reachable = True
    except OSError:
        reachable = False
    require(reachable, f"PostgreSQL is not reachable on {POSTGRES}")


async def _create(connection: object) -> None:
    await connection.execute(text("CREATE TABLE notes (body TEXT)"))  # type: ignore[attr-defined]


async def _write_and_read(db: Database) -> list[str]:
    await db.migrate("notes", [Migration(1, _create)])
    async with db.begin() as connection:
        await connection.execute(text("INSERT INTO notes (body) VALUES ('kept')"))
    async with db.connect() as connection:
        return [row[0] for row in await connection.execute(text("SELECT body FROM notes"))]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://user@host/db", "postgresql+asyncpg://user@host/db"),
        ("postgres://user:pw@host:5433/db", "postgresql+asyncpg://user:pw@host:5433/db"),
        ("PostgreSQL://user@host/db", "postgresql+asyncpg://user@host/db"),
        ("sqlite:///state/nb.db", "sqlite+aiosqlite:///state/nb.db"),
        ("sqlite+aiosqlite:///nb.db", "sqlite+aiosqlite:///nb.db"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("mysql://x/y", "mysql://x/y"),
    ],
)
def test_urls_without_a_driver_get_the_async_one(url: str, expected: str) -> None:
    assert with_async_driver(url) == expected
    assert Database(url).url == expected


async def test_a_plain_postgresql_url_works() -> None:
    need_postgres()
    db = Database(f"postgresql://postgres@{POSTGRES}/test", schema=f"nbtest_{uuid.uuid4().hex[:12]}")
    try:
        assert await _write_and_read(db) == ["kept"]
    finally:
        await db.drop_schema()
        await db.aclose()


async def test_a_plain_sqlite_url_works(tmp_path: Path) -> None:
    async with Database(f"sqlite:///{tmp_path / 'plain.db'}") as db:
        assert await _write_and_read(db) == ["kept"]


def test_other_drivers_are_refused_with_the_supported_forms() -> None:
    with pytest.raises(DatabaseError) as info:
        Database("postgresql+psycopg://ada:secret@h/d").engine  # noqa: B018
    message = str(info.value)
    assert "unsupported database URL 'postgresql+psycopg://ada:***@h/d'" in message
    assert "postgresql://USER@HOST/DB" in message and "sqlite:///PATH" in message
    assert "secret" not in message


async def test_an_unknown_postgres_database_names_the_url_without_its_password() -> None:
    need_postgres()
    name = f"nb_missing_{uuid.uuid4().hex[:8]}"
    db = Database(f"postgresql://postgres:secret@{POSTGRES}/{name}", connect_timeout=5)
    try:
        with pytest.raises(DatabaseError) as info:
            await db.migrate("notes", [Migration(1, _create)])
    finally:
        await db.aclose()
    message = str(info.value)
    assert f"postgresql+asyncpg://postgres:***@{POSTGRES}/{name}" in message
    assert f"has no database {name!r}" in message and f"createdb {name}" in message
    assert "secret" not in message


async def test_a_refused_postgres_login_says_what_to_check() -> None:
    need_postgres()
    db = Database(f"postgresql://nb_nobody@{POSTGRES}/test", connect_timeout=5)
    try:
        with pytest.raises(DatabaseError, match=r"refused the login of user 'nb_nobody'.*user name and password"):
            async with db.connect():
                pass
    finally:
        await db.aclose()


async def test_an_sqlite_path_that_is_a_folder_is_a_clear_error(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}")
    try:
        with pytest.raises(DatabaseError) as info:
            async with db.begin():
                pass
    finally:
        await db.aclose()
    message = str(info.value)
    assert f"cannot open the SQLite database {tmp_path}: unable to open database file" in message
    assert "NANOBRAIN_HOME" in message and "NANOBRAIN_DATABASE_URL" in message


async def test_an_sqlite_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("just some notes, not a database " * 100)
    db = Database(f"sqlite:///{other}")
    try:
        with pytest.raises(DatabaseError, match=r"is not a database\. Use another file"):
            await db.migrate("notes", [Migration(1, _create)])
    finally:
        await db.aclose()


async def test_an_sqlite_folder_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "sub" / "nb.db"
    db = Database(f"sqlite:///{path}")
    try:
        with pytest.raises(DatabaseError) as info:
            async with db.connect():
                pass
    finally:
        await db.aclose()
    assert str(info.value).startswith(f"cannot create the folder of the SQLite database {path}: ")
    assert "NANOBRAIN_HOME" in str(info.value)


def test_nanobrain_home_that_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.write_text("")
    monkeypatch.setenv("NANOBRAIN_HOME", str(home))
    monkeypatch.delenv("NANOBRAIN_DATABASE_URL", raising=False)
    with pytest.raises(HomeError, match=re.escape(f"NANOBRAIN_HOME={home} is not a folder")):
        nanobrain_home()
    with pytest.raises(NanoBrainError, match="NANOBRAIN_HOME"):
        Database()


def test_nanobrain_home_that_cannot_be_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("")
    home = tmp_path / "file" / "home"
    monkeypatch.setenv("NANOBRAIN_HOME", str(home))
    monkeypatch.delenv("NANOBRAIN_DATABASE_URL", raising=False)
    with pytest.raises(HomeError, match=re.escape(f"cannot create NANOBRAIN_HOME={home}: ") + ".*writable folder"):
        default_database_url()


def test_default_home_is_named_when_nanobrain_home_is_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".nanobrain").write_text("")  # the default home folder's place is taken by a file
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NANOBRAIN_HOME", raising=False)
    with pytest.raises(HomeError, match=r"home folder .*\.nanobrain \(NANOBRAIN_HOME is unset\) is not a folder"):
        nanobrain_home()
