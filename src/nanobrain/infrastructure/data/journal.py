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

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from ...core.journal import JournalError, RunLocked, RunRecord, owner_alive
from .database import Database, Migration

COMPONENT = "journal"

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


def _record(row: Any) -> RunRecord:
    values = dict(zip(_FIELDS, row, strict=True))
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

    def __init__(self, database: Database | str | None = None, *, synchronous: str = "NORMAL") -> None:
        self.database = database if isinstance(database, Database) else Database(database)
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise JournalError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.synchronous = synchronous.upper()
        self._sqlite: sqlite3.Connection | None = None

    @classmethod
    def default(cls) -> SqlJournalStore:
        return cls()

    # -- plumbing ---------------------------------------------------------------------------
    async def _ready(self) -> None:
        await self.database.migrate(COMPONENT, MIGRATIONS)

    def _fast(self) -> sqlite3.Connection | None:
        """The direct SQLite connection for appends (None on PostgreSQL)."""
        if self.database.dialect != "sqlite":
            return None
        if self._sqlite is None:
            path = self.database._sqlite_path()
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
            self._sqlite = connection
        return self._sqlite

    async def _execute(self, sql: str, params: dict[str, Any] | None = None, *, fetch: bool = False) -> list[Any]:
        from sqlalchemy import text

        await self._ready()
        async with self.database.begin() as connection:
            result = await connection.execute(text(sql), params or {})
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
        except IntegrityError:
            raise JournalError(f"a durable run with id {record.run_id!r} already exists") from None

    async def get(self, run_id: str) -> RunRecord | None:
        rows = await self._execute(
            "SELECT " + ", ".join(_FIELDS) + " FROM nanobrain_runs WHERE run_id = :r", {"r": run_id}, fetch=True
        )
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
        from sqlalchemy import text

        await self._ready()
        async with self.database.begin() as connection:
            result = await connection.execute(
                text("UPDATE nanobrain_runs SET owner = :o, updated = :t WHERE run_id = :r AND owner = :p"),
                {"o": owner, "t": time.time(), "r": run_id, "p": previous},
            )
        if result.rowcount != 1:
            raise RunLocked(f"run {run_id} was just taken by another process")
        record.owner = owner
        return record

    async def release(self, run_id: str, owner: str) -> None:
        await self._execute(
            "UPDATE nanobrain_runs SET owner = '' WHERE run_id = :r AND owner = :o", {"r": run_id, "o": owner}
        )

    async def append(self, run_id: str, first_seq: int, entries: Sequence[bytes]) -> None:
        size = sum(map(len, entries))
        rows = [(run_id, first_seq + i, blob) for i, blob in enumerate(entries)]
        fast = self._fast()
        if fast is not None:
            await self._ready()
            fast.execute("BEGIN")
            try:
                fast.executemany("INSERT INTO nanobrain_journal (run_id, seq, data) VALUES (?, ?, ?)", rows)
                fast.execute(
                    "UPDATE nanobrain_runs SET entries = entries + ?, bytes = bytes + ? WHERE run_id = ?",
                    (len(rows), size, run_id),
                )
                fast.execute("COMMIT")
            except BaseException:
                fast.execute("ROLLBACK")
                raise
            return
        from sqlalchemy import text

        await self._ready()
        async with self.database.begin() as connection:
            await connection.execute(
                text("INSERT INTO nanobrain_journal (run_id, seq, data) VALUES (:r, :s, :d)"),
                [{"r": r, "s": s, "d": d} for r, s, d in rows],
            )
            await connection.execute(
                text("UPDATE nanobrain_runs SET entries = entries + :n, bytes = bytes + :b WHERE run_id = :r"),
                {"n": len(rows), "b": size, "r": run_id},
            )

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
            "SELECT " + ", ".join(_FIELDS) + f" FROM nanobrain_runs {where} ORDER BY created DESC LIMIT :l",
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
