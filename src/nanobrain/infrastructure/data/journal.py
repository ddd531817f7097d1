"""The durable-run journal in SQL: SQLite under NANOBRAIN_HOME by default, PostgreSQL by URL.

Two tables: one row per run (status, definition, lease) and one row per journal entry. The
schema is versioned with the other components' (`Database.migrate`), so a journal written by
a newer NanoBrain is refused with a clear message.

On SQLite, entries are appended through a plain `sqlite3` connection on the calling thread:
a WAL commit at `synchronous=NORMAL` costs tens of microseconds and survives `kill -9` (the
OS keeps what was written; a power loss may lose the last commits — `synchronous="FULL"`
closes that at the cost of an fsync per step). PostgreSQL goes through the async engine.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from ...core.journal import JournalError, RunLocked, RunRecord, owner_alive
from .database import Database, Migration

COMPONENT = "journal"
RETENTION_VARIABLE = "NANOBRAIN_JOURNAL_RETENTION_DAYS"

_FIELDS = (
    "run_id",
    "workflow",
    "status",
    "definition",
    "source",
    "waiting",
    "error",
    "created",
    "updated",
    "entries",
    "bytes",
    "owner",
    "parent_run_id",
)


async def _create_tables(connection: Any) -> None:
    from sqlalchemy import text

    blob = "BYTEA" if connection.dialect.name == "postgresql" else "BLOB"
    await connection.execute(
        text(
            "CREATE TABLE IF NOT EXISTS nanobrain_runs ("
            "run_id VARCHAR(200) PRIMARY KEY, workflow VARCHAR(200) NOT NULL, status VARCHAR(20) NOT NULL, "
            "definition TEXT NOT NULL, source TEXT NOT NULL, waiting TEXT NOT NULL, error TEXT NOT NULL, "
            "created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL, entries INTEGER NOT NULL, "
            "bytes BIGINT NOT NULL, owner VARCHAR(200) NOT NULL, parent_run_id VARCHAR(200))"
        )
    )
    await connection.execute(text("CREATE INDEX IF NOT EXISTS nanobrain_runs_status ON nanobrain_runs (status)"))
    await connection.execute(
        text(
            "CREATE TABLE IF NOT EXISTS nanobrain_journal ("
            f"run_id VARCHAR(200) NOT NULL, seq INTEGER NOT NULL, data {blob} NOT NULL, PRIMARY KEY (run_id, seq))"
        )
    )


MIGRATIONS = [Migration(1, _create_tables, "durable-run journal")]


# The entry count and size are computed, so appending a step writes one row and nothing else.
_SELECT = (
    "SELECT "
    + ", ".join(f"r.{f}" for f in _FIELDS if f not in ("entries", "bytes"))
    + ", (SELECT COUNT(*) FROM nanobrain_journal j WHERE j.run_id = r.run_id)"
    + ", (SELECT COALESCE(SUM(LENGTH(j.data)), 0) FROM nanobrain_journal j WHERE j.run_id = r.run_id)"
    + " FROM nanobrain_runs r"
)
_SELECTED = (*(f for f in _FIELDS if f not in ("entries", "bytes")), "entries", "bytes")


#: How long an append waits for another writer of the same SQLite file before it fails.
LOCK_PATIENCE = 30.0


async def _begin_immediate(connection: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE without blocking the event loop while another connection writes.

    The other writer may be an async connection (history, sessions, an A2A task store on the same file)
    that needs this very loop to commit: waiting inside sqlite3's busy handler would block the loop and
    deadlock both until the timeout. So the connection never waits (busy_timeout 0) and we wait here.
    """
    delay, deadline = 0.001, time.monotonic() + LOCK_PATIENCE
    while True:
        try:
            connection.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


@asynccontextmanager
async def _transaction(connection: sqlite3.Connection, database: Database) -> AsyncIterator[None]:
    try:
        await _begin_immediate(connection)
        try:
            yield
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        # The direct connection bypasses SQLAlchemy's error handling: a damaged file is explained here.
        error = database.explain(exc)
        if error is None:
            raise
        raise error from exc


def _record(row: Any) -> RunRecord:
    values = dict(zip(_SELECTED, row, strict=True))
    try:
        definition = json.loads(values["definition"])
    except ValueError:
        definition = {}
    return RunRecord(
        values["run_id"],
        values["workflow"],
        status=values["status"],
        definition=definition,
        source=values["source"],
        where=values["waiting"],
        error=values["error"],
        created=values["created"],
        updated=values["updated"],
        entries=values["entries"],
        bytes=values["bytes"],
        owner=values["owner"],
        parent_run_id=values["parent_run_id"],
    )


class SqlJournalStore:
    """A `JournalStore` on a `Database` (see module docstring)."""

    def __init__(
        self,
        database: Database | str | None = None,
        *,
        synchronous: str = "NORMAL",
        retention_days: float | None = None,
    ) -> None:
        self.database = database if isinstance(database, Database) else Database(database)
        #: Finished and failed runs older than this are pruned when the store is first used.
        self.retention_days = retention_days
        self._pruned = False
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise JournalError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.synchronous = synchronous.upper()
        self._sqlite: sqlite3.Connection | None = None
        self._rowcount = 0

    @classmethod
    def default(cls) -> SqlJournalStore:
        """The journal in the default database, keeping finished runs for
        NANOBRAIN_JOURNAL_RETENTION_DAYS days (default 30; 0 keeps them forever)."""
        text = os.environ.get(RETENTION_VARIABLE, "").strip() or "30"
        try:
            days = float(text)
            if days < 0:
                raise ValueError
        except ValueError:
            raise JournalError(f"{RETENTION_VARIABLE}={text!r} must be a number of days (0: keep forever)") from None
        return cls(retention_days=days or None)

    # -- plumbing ---------------------------------------------------------------------------
    async def _ready(self) -> None:
        await self.database.migrate(COMPONENT, MIGRATIONS)
        if self.retention_days and not self._pruned:
            self._pruned = True
            await self.prune(finished_before=time.time() - self.retention_days * 86400)

    def _fast(self) -> sqlite3.Connection | None:
        """The direct SQLite connection for appends (None on PostgreSQL)."""
        if self.database.dialect != "sqlite":
            return None
        if self._sqlite is None:
            path = self.database._sqlite_path()
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
            connection.execute("PRAGMA busy_timeout=0")  # waiting for a lock is done without blocking the loop
            self._sqlite = connection
        return self._sqlite

    async def _execute(self, sql: str, params: dict[str, Any] | None = None, *, fetch: bool = False) -> list[Any]:
        """Run one statement in its own transaction (on SQLite through the direct connection)."""
        await self._ready()
        fast = self._fast()
        if fast is not None:
            async with _transaction(fast, self.database):
                cursor = fast.execute(sql, params or {})
                rows = cursor.fetchall() if fetch else []
                self._rowcount = cursor.rowcount
            return rows
        from sqlalchemy import text

        async with self.database.begin() as connection:
            result = await connection.execute(text(sql), params or {})
            self._rowcount = result.rowcount
            return list(result.fetchall()) if fetch else []

    # -- JournalStore -------------------------------------------------------------------------
    async def create(self, record: RunRecord) -> None:
        from sqlalchemy.exc import IntegrityError

        try:
            await self._execute(
                "INSERT INTO nanobrain_runs (" + ", ".join(_FIELDS) + ") VALUES ("
                + ", ".join(f":{f}" for f in _FIELDS) + ")",
                {
                    "run_id": record.run_id,
                    "workflow": record.workflow,
                    "status": record.status,
                    "definition": json.dumps(record.definition),
                    "source": record.source,
                    "waiting": record.where,
                    "error": record.error,
                    "created": record.created,
                    "updated": record.updated,
                    "entries": 0,
                    "bytes": 0,
                    "owner": record.owner,
                    "parent_run_id": record.parent_run_id,
                },
            )
        except (IntegrityError, sqlite3.IntegrityError):
            raise JournalError(f"a durable run with id {record.run_id!r} already exists") from None

    async def get(self, run_id: str) -> RunRecord | None:
        rows = await self._execute(f"{_SELECT} WHERE r.run_id = :r", {"r": run_id}, fetch=True)
        return _record(rows[0]) if rows else None

    async def acquire(self, run_id: str, owner: str) -> RunRecord:
        record = await self.get(run_id)
        if record is None:
            raise JournalError(f"no durable run with id {run_id!r}")
        previous = record.owner
        if previous and previous != owner and owner_alive(previous):
            raise RunLocked(f"run {run_id} is being run by another process ({previous}); wait for it to end")
        # Compare-and-set on the owner we saw: of two processes taking a dead owner's lease,
        # exactly one changes the row.
        await self._execute(
            "UPDATE nanobrain_runs SET owner = :o, updated = :t WHERE run_id = :r AND owner = :p",
            {"o": owner, "t": time.time(), "r": run_id, "p": previous},
        )
        if self._rowcount != 1:
            raise RunLocked(f"run {run_id} was just taken by another process")
        record.owner = owner
        return record

    async def release(self, run_id: str, owner: str) -> None:
        await self._execute(
            "UPDATE nanobrain_runs SET owner = '' WHERE run_id = :r AND owner = :o", {"r": run_id, "o": owner}
        )

    async def append(self, run_id: str, first_seq: int, entries: Sequence[bytes]) -> None:
        from sqlalchemy.exc import IntegrityError

        rows = [{"r": run_id, "s": first_seq + i, "d": blob} for i, blob in enumerate(entries)]
        insert = "INSERT INTO nanobrain_journal (run_id, seq, data) VALUES (:r, :s, :d)"
        await self._ready()
        try:
            fast = self._fast()
            if fast is not None:
                async with _transaction(fast, self.database):
                    fast.executemany(insert, rows)
                return
            from sqlalchemy import text

            async with self.database.begin() as connection:
                await connection.execute(text(insert), rows)
        except (IntegrityError, sqlite3.IntegrityError):
            raise JournalError(
                f"run {run_id}: journal entry {first_seq} was already written (is another process running it?)"
            ) from None

    async def entries(self, run_id: str) -> list[bytes]:
        rows = await self._execute(
            "SELECT seq, data FROM nanobrain_journal WHERE run_id = :r ORDER BY seq", {"r": run_id}, fetch=True
        )
        for expected, (seq, _) in enumerate(rows):
            if seq != expected:
                from ...core.journal import RunCorrupt

                raise RunCorrupt(f"run {run_id}: journal entry {expected} is missing")
        return [bytes(data) for _, data in rows]

    async def update(self, run_id: str, **fields: Any) -> None:
        columns = {"status": "status", "where": "waiting", "error": "error"}
        unknown = [name for name in fields if name not in columns]
        if unknown:
            raise JournalError(f"cannot update {', '.join(unknown)} of a run")
        assignments = ", ".join(f"{columns[name]} = :{name}" for name in fields)
        await self._execute(
            f"UPDATE nanobrain_runs SET {assignments}, updated = :updated WHERE run_id = :run_id",
            {**fields, "updated": time.time(), "run_id": run_id},
        )

    async def runs(self, *, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        where = "WHERE status = :s" if status else ""
        rows = await self._execute(
            f"{_SELECT} {where.replace('status', 'r.status')} ORDER BY r.created DESC LIMIT :l",
            {"s": status, "l": limit},
            fetch=True,
        )
        return [_record(row) for row in rows]

    async def prune(self, *, finished_before: float) -> int:
        params = {"t": finished_before}
        old = "SELECT run_id FROM nanobrain_runs WHERE status IN ('finished', 'failed') AND updated < :t"
        await self._execute(f"DELETE FROM nanobrain_journal WHERE run_id IN ({old})", params)
        rows = await self._execute(
            "DELETE FROM nanobrain_runs WHERE status IN ('finished', 'failed') AND updated < :t RETURNING run_id",
            params,
            fetch=True,
        )
        return len(rows)

    async def aclose(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        await self.database.aclose()


__all__ = ["MIGRATIONS", "SqlJournalStore"]
