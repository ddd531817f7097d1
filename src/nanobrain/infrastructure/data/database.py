"""One async SQL layer (SQLAlchemy 2): SQLite through aiosqlite, PostgreSQL through asyncpg.

Each component (history, key-value, cache) versions its own tables: opening a database written
by an older NanoBrain upgrades it inside a transaction; one written by a newer NanoBrain is
refused with a clear message, never used silently.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ...core.closing import AsyncClosing
from ...core.errors import NanoBrainError
from ..security.redaction import mask_url, redact
from .home import create_private_file, default_database_url, is_in_home, tighten_file


class DatabaseError(NanoBrainError):
    """The database cannot be used as asked (unreachable, wrong schema version, bad URL)."""


_SQLITE_HINT = (
    "set NANOBRAIN_HOME to a writable folder (the default database is NANOBRAIN_HOME/nanobrain.db) "
    "or NANOBRAIN_DATABASE_URL to another database"
)


@dataclass(frozen=True)
class Migration:
    """Brings `component` from `version - 1` to `version`."""

    version: int
    apply: Callable[[Any], Awaitable[None]]  # receives an AsyncConnection
    description: str = ""


#: SQLite's primary result codes for a damaged file (the extended codes add bits above 0xFF).
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: The async driver NanoBrain uses for each database, for URLs that name none (`postgresql://...`).
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
_SUPPORTED = ("sqlite+aiosqlite", "postgresql+asyncpg")


def with_async_driver(url: str) -> str:
    """`postgresql://`, `postgres://` and `sqlite://` URLs turned into the async drivers' forms.

    `postgresql://user@host/db` -> `postgresql+asyncpg://user@host/db`,
    `sqlite:///file.db` -> `sqlite+aiosqlite:///file.db`; other URLs are returned unchanged.
    """
    scheme, sep, rest = url.partition("://")
    driver = _DRIVERS.get(scheme.lower()) if sep else None
    return f"{driver}://{rest}" if driver else url


def _sqlstate(exc: BaseException) -> str:
    """The SQLSTATE code of a PostgreSQL error (asyncpg's, or SQLAlchemy's wrapper of it), or ''."""
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "sqlstate", None)
        if isinstance(code, str):
            return code
        seen = seen.__cause__
    return ""


class Database(AsyncClosing):
    """An async database selected by URL.

    `sqlite+aiosqlite:///path/file.db` (the default, under NANOBRAIN_HOME) or
    `postgresql+asyncpg://user@host/db`; `sqlite:///...`, `postgresql://...` and `postgres://...`
    mean the same. `schema` (PostgreSQL) keeps a deployment's or a test's
    tables apart. SQLite runs in WAL mode so readers do not block the writer and committed
    writes survive a killed process.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        schema: str | None = None,
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        echo: bool = False,
    ) -> None:
        self.url = with_async_driver(url or default_database_url())
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise DatabaseError(f"schema name {schema!r} must be lowercase letters, digits and '_'")
        self.schema = schema
        self.pool_size = pool_size
        self.max_overflow = max_overflow
        self.pool_timeout = pool_timeout
        self.connect_timeout = connect_timeout
        self.echo = echo
        self._engine: Any = None
        self._ready: set[str] = set()
        self._lock = asyncio.Lock()

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.url.split("+", 1)[0].split(":", 1)[0]

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from sqlalchemy.exc import ArgumentError

            try:
                self._engine = self._create_engine()
            except (ArgumentError, ValueError) as exc:  # SQLAlchemy's URL parser: a bad port, form, ...
                raise DatabaseError(f"invalid database URL {self.safe_url!r}: {redact(str(exc))}") from None
        return self._engine

    def _create_engine(self) -> Any:
        from sqlalchemy import event
        from sqlalchemy.ext.asyncio import create_async_engine

        if self.url.split("://", 1)[0].lower() not in _SUPPORTED:
            raise DatabaseError(
                f"unsupported database URL {self.safe_url!r}: use sqlite:///PATH (SQLite through aiosqlite) "
                "or postgresql://USER@HOST/DB (PostgreSQL through asyncpg)"
            )
        if self.dialect == "postgresql":
            from ...optional import require

            require("asyncpg", extra="storage", purpose="a PostgreSQL database URL")
        if self.dialect == "sqlite":
            from sqlalchemy.engine import make_url

            parsed = make_url(self.url)
            if parsed.username or parsed.password or parsed.host or parsed.port:
                # Nothing is created for a URL that is not a file path (it would make folders
                # named after the URL, password included, in the working directory).
                raise DatabaseError(
                    f"invalid database URL {self.safe_url!r}: an SQLite URL names a file, sqlite:///PATH "
                    "(no user, password or host)"
                )
            path = self._sqlite_path()
            if path and path != ":memory:":
                from pathlib import Path

                try:
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise DatabaseError(
                        f"cannot create the folder of the SQLite database {path}: {exc.strerror or exc}. "
                        f"Use a path whose folder can be created, or {_SQLITE_HINT}"
                    ) from None
                if "uri=true" not in self.url.lower():
                    self._make_private(Path(path))
                    self._check_sqlite_file(path)
            engine = create_async_engine(
                self.url, echo=self.echo, connect_args={"timeout": self.connect_timeout}
            )
            self._explain_connect_errors(engine)

            @event.listens_for(engine.sync_engine, "connect")
            def _pragmas(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                # Connections opening a new file at once race to switch it to WAL, and the loser
                # gets "database is locked" without any busy wait: retry briefly (WAL then persists).
                for attempt in range(100):
                    try:
                        cursor.execute("PRAGMA journal_mode=WAL")
                        break
                    except Exception as exc:
                        if "locked" not in str(exc) or attempt == 99:
                            raise
                        time.sleep(0.005)
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute(f"PRAGMA busy_timeout={int(self.connect_timeout * 1000)}")
                cursor.close()

            return engine
        if self.dialect == "postgresql":
            connect_args: dict[str, Any] = {"timeout": self.connect_timeout}
            if self.schema:
                connect_args["server_settings"] = {"search_path": self.schema}
            engine = create_async_engine(
                self.url,
                echo=self.echo,
                pool_size=self.pool_size,
                max_overflow=self.max_overflow,
                pool_timeout=self.pool_timeout,
                pool_pre_ping=True,
                connect_args=connect_args,
            )
            self._explain_connect_errors(engine)
            return engine
        raise AssertionError(self.url)  # unreachable: _SUPPORTED lists the dialects above

    def _sqlite_path(self) -> str:
        return self.url.split("///", 1)[-1].split("?", 1)[0]

    @staticmethod
    def _make_private(path: Any) -> None:
        """A new database file is created owner-only (SQLite gives its -wal and -shm the same mode).

        Files under NANOBRAIN_HOME written by an older NanoBrain are tightened; a database the
        user keeps elsewhere keeps the mode the user gave it.
        """
        try:
            if create_private_file(path):
                return
        except OSError:
            return  # SQLite reports why the file cannot be opened, with its name
        if is_in_home(path):
            for suffix in ("", "-wal", "-shm", "-journal"):
                tighten_file(path.with_name(path.name + suffix))

    def _check_sqlite_file(self, path: str) -> None:
        """Open the file once, synchronously, so that a file that cannot be opened is a clear error.

        (When aiosqlite fails to connect, it leaves its worker thread behind, which reports the
        failure again, with a traceback, once the event loop has closed.)
        """
        import sqlite3

        try:
            connection = sqlite3.connect(path, timeout=self.connect_timeout)
            try:
                connection.execute("PRAGMA schema_version")  # "file is not a database" shows only here
            finally:
                connection.close()
        except sqlite3.Error as exc:
            error = self._connect_error(exc)
            if error is None:
                raise
            raise error from None

    def _explain_connect_errors(self, engine: Any) -> None:
        """Errors while connecting (no such database, login refused, unopenable file) and damaged
        storage become DatabaseErrors that name the database and say what to do."""
        from sqlalchemy import event

        @event.listens_for(engine.sync_engine, "handle_error")
        def _explain(context: Any) -> None:
            if context.is_pre_ping:
                return  # the pool is checking a connection: it handles the failure itself
            exc = context.original_exception
            error = self.explain(exc) if context.connection is not None else self._connect_error(exc)
            if error is not None:
                raise error

    def explain(self, exc: BaseException) -> DatabaseError | None:
        """A clear error for a failed statement that is not the caller's fault (damaged storage), or None."""
        detail = redact(str(exc).strip() or type(exc).__name__)
        if self.dialect == "sqlite":
            code = getattr(exc, "sqlite_errorcode", None)
            primary = code & 0xFF if isinstance(code, int) else None
            # Adapters may drop the code; the driver's exception class names and words remain.
            driver_error = type(exc).__name__ in ("DatabaseError", "OperationalError")
            damaged = primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or (
                primary is None and driver_error and ("malformed" in detail or "not a database" in detail)
            )
            if not damaged:
                return None
            path = self._sqlite_path()
            return DatabaseError(
                f"the SQLite database {path} is damaged ({detail}). Stop NanoBrain, keep a copy of the file, "
                f"then recover what is readable with `sqlite3 {path} .recover | sqlite3 {path}.recovered` and "
                f"use the recovered file, or move {path} away to start with an empty database"
            )
        if _sqlstate(exc) in ("XX001", "XX002"):  # data_corrupted, index_corrupted
            return DatabaseError(
                f"the PostgreSQL database at {self.safe_url} reports damaged data ({detail}): ask its "
                "administrator to check the server's storage, REINDEX damaged indexes or restore a backup"
            )
        return None

    def _connect_error(self, exc: BaseException) -> DatabaseError | None:
        detail = redact(str(exc).strip() or type(exc).__name__)
        if self.dialect == "sqlite":
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF == _SQLITE_CORRUPT:
                return self.explain(exc)
            if type(exc).__name__ not in ("OperationalError", "DatabaseError") or "locked" in detail:
                return None
            fix = "Check that its folder exists and is writable" if "unable to open" in detail else "Use another file"
            return DatabaseError(
                f"cannot open the SQLite database {self._sqlite_path()}: {detail}. {fix}, or {_SQLITE_HINT}"
            )
        code = _sqlstate(exc)
        if code == "3D000":  # invalid_catalog_name
            name = urlsplit(self.url).path.lstrip("/")
            return DatabaseError(
                f"the PostgreSQL server at {self.safe_url} has no database {name!r}: create it "
                f"(`createdb {name}`) or name an existing database in the URL"
            )
        if code.startswith("28"):  # invalid_authorization_specification, invalid_password
            user = urlsplit(self.url).username or "(none)"
            return DatabaseError(
                f"the PostgreSQL server at {self.safe_url} refused the login of user {user!r} ({detail}): "
                "check the user name and password in the URL, or the server's pg_hba.conf"
            )
        return None

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Any]:
        """A connection in a transaction, committed on success."""
        try:
            await self._ensure_schema_exists()
            async with self.engine.begin() as connection:
                yield connection
        except OSError as exc:
            raise self.unreachable(exc) from exc

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        """A connection without an explicit transaction (reads)."""
        try:
            await self._ensure_schema_exists()
            async with self.engine.connect() as connection:
                yield connection
        except OSError as exc:
            raise self.unreachable(exc) from exc

    async def _ensure_schema_exists(self) -> None:
        if not self.schema or "__schema__" in self._ready or self.dialect != "postgresql":
            return
        from sqlalchemy import text

        async with self._lock:
            if "__schema__" not in self._ready:
                async with self.engine.begin() as connection:
                    # CREATE ... IF NOT EXISTS is not safe against a concurrent creator: serialize.
                    await connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('nanobrain_schema'))"))
                    await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                self._ready.add("__schema__")

    async def migrate(self, component: str, migrations: Sequence[Migration]) -> None:
        """Bring `component`'s tables to the newest version (once per process and database)."""
        if component in self._ready:
            return
        try:
            await self._migrate(component, migrations)
        except OSError as exc:
            raise self.unreachable(exc) from exc

    async def _migrate(self, component: str, migrations: Sequence[Migration]) -> None:
        from sqlalchemy import text

        target = max((m.version for m in migrations), default=0)
        await self._ensure_schema_exists()
        async with self._lock:
            if component in self._ready:
                return
            async with self.engine.begin() as connection:
                if self.dialect == "sqlite":
                    # pysqlite runs DDL outside any transaction: take the write lock first, so that
                    # processes upgrading at once wait for each other and a crash leaves no half upgrade.
                    await connection.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    # CREATE TABLE IF NOT EXISTS races with a concurrent creator on PostgreSQL.
                    await connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('nanobrain_schema'))"))
                await connection.execute(
                    text(
                        "CREATE TABLE IF NOT EXISTS nanobrain_schema "
                        "(component VARCHAR(64) PRIMARY KEY, version INTEGER NOT NULL)"
                    )
                )
                if self.dialect == "postgresql":
                    # Two processes upgrading at once must not both apply a migration.
                    await connection.execute(text("LOCK TABLE nanobrain_schema IN EXCLUSIVE MODE"))
                row = (
                    await connection.execute(
                        text("SELECT version FROM nanobrain_schema WHERE component = :c"), {"c": component}
                    )
                ).first()
                current = row[0] if row else 0
                if current > target:
                    raise DatabaseError(
                        f"the {component} tables in {self.safe_url} are at schema version {current}, "
                        f"written by a newer NanoBrain; this version knows up to {target}. Upgrade NanoBrain."
                    )
                for migration in sorted(migrations, key=lambda m: m.version):
                    if migration.version > current:
                        await migration.apply(connection)
                if current < target:
                    if row:
                        await connection.execute(
                            text("UPDATE nanobrain_schema SET version = :v WHERE component = :c"),
                            {"v": target, "c": component},
                        )
                    else:
                        await connection.execute(
                            text("INSERT INTO nanobrain_schema (component, version) VALUES (:c, :v)"),
                            {"c": component, "v": target},
                        )
            self._ready.add(component)

    async def schema_version(self, component: str) -> int:
        from sqlalchemy import text

        async with self.connect() as connection:
            try:
                row = (
                    await connection.execute(
                        text("SELECT version FROM nanobrain_schema WHERE component = :c"), {"c": component}
                    )
                ).first()
            except Exception:
                return 0
        return row[0] if row else 0

    async def drop_schema(self) -> None:
        """Drop this database's PostgreSQL schema with everything in it (tests, teardown)."""
        if self.dialect != "postgresql" or not self.schema:
            raise DatabaseError("drop_schema needs a PostgreSQL database opened with schema=...")
        from sqlalchemy import text

        async with self.engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        self._ready.clear()

    @property
    def safe_url(self) -> str:
        """The URL with its password masked: the form every message and repr shows."""
        return mask_url(self.url)

    def unreachable(self, exc: OSError) -> DatabaseError:
        """The error for a database that cannot be reached (the driver's words, without secrets)."""
        return DatabaseError(f"cannot reach the database at {self.safe_url}: {redact(str(exc))}")

    async def aclose(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()
        self._ready.clear()

    def __repr__(self) -> str:
        return f"Database({self.safe_url!r})"
