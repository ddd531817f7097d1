"""Storage benchmarks: conversation history through NanoBrain vs the raw driver doing the same SQL.

    .venv/bin/python benchmarks/storage.py            # full run (~1 min), writes results/storage.json
    .venv/bin/python benchmarks/storage.py --quick    # smoke run (~10 s), writes results/storage-quick.json
    .venv/bin/python benchmarks/storage.py --output /tmp/storage.json --repeat 9

Figures (SQLite always; PostgreSQL when reachable at NANOBRAIN_BENCH_POSTGRES_URL, default
postgresql+asyncpg://postgres@127.0.0.1:5432/test, in a schema created and dropped by the run):

sqlite_append / postgres_append
        `ConversationHistory.append` (one committed transaction per message), appends/s; baseline: the
        raw driver (aiosqlite / asyncpg) running the same statements on the same schema, one
        transaction per append, building the same parameters (JSON for tool calls and metadata).
        SQLite: bump the session's counter, insert, commit. PostgreSQL: one statement (a CTE that
        bumps the counter and inserts), its own transaction.
sqlite_read / postgres_read
        `ConversationHistory.messages(session, limit=20)` (the latest page, as StoredMessage objects),
        reads/s; baseline: the same SELECT through the raw driver, its rows turned into the same
        objects by the history's own decoder, so that the ratio is the data layer's cost (pool,
        connection handling) and not the decoding both need. The rate of the bare SELECT (rows
        left as tuples) is recorded as `details.raw_tuples_reads_per_s_median`.

Both sides write to their own file or schema with the same tables, indexes and full-text triggers,
so both pay the same database work. Each round measures NanoBrain and its baseline back to back
(alternating which goes first); min and median are over rounds (min is the slowest round), ratios
use medians. Target: ratio >= 0.7.

The rows of `cache_bench.py` (the cache hierarchy's L1/L2/L3 hit latency) are measured by its
`measure(quick)` and written beside these, each with its own target (L1's is on the value).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cache_bench
from common import POSTGRES_URL, BenchmarkArguments, BenchmarkRun, figure, machine_info, reachable, rounded, timed

from nanobrain.infrastructure.data import history_sql
from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.data.history import ConversationHistory, to_micros
from nanobrain.infrastructure.data.history_sql import ensure_history_schema, positional
from nanobrain.llm.messages import Message, Usage

PAGE = 20
TARGET = 0.7
CONTENT = "The quick brown fox jumps over the lazy dog; a typical chat answer of a few dozen words. " * 3
METADATA = {"latency_ms": 812, "client": "bench"}

# The raw baselines run exactly the statements the history runs, through the same driver calls.
BUMP_SQL = history_sql.BUMP_SEQ
INSERT_SQL = history_sql.INSERT_MESSAGE_RETURNING
APPEND_POSTGRES_SQL = history_sql.APPEND_POSTGRES
READ_SQL = f"{history_sql.SELECT_MESSAGE} WHERE m.session_id = :s ORDER BY m.seq DESC LIMIT :limit"


@dataclass(frozen=True)
class Params:
    repeat: int
    appends: int  # per side and round
    reads: int  # per side and round

    @classmethod
    def for_mode(cls, quick: bool, repeat: int | None) -> Params:
        if quick:
            return cls(repeat=repeat or 5, appends=200, reads=200)
        return cls(repeat=repeat or 7, appends=1000, reads=1000)


def _message_params(session_id: str, i: int) -> dict[str, Any]:
    """What the history stores for one benchmark message, built the way a caller without NanoBrain would."""
    return {
        "session_id": session_id,
        "seq": 0,
        "role": "assistant",
        "content": f"{i} {CONTENT}",
        "tool_calls": None,
        "tool_call_id": None,
        "name": None,
        "is_error": False,
        "model": "bench-model",
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "metadata": json.dumps(METADATA),
        "created_at": to_micros(dt.datetime.now(dt.UTC)),
        "encrypted": False,
        "count": 1,
    }


# -- the two sides -------------------------------------------------------------------------------


class NanoBrainSide:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.history = ConversationHistory(database)

    async def append(self, session_id: str, count: int) -> None:
        for i in range(count):
            await self.history.append(
                session_id, Message.assistant(f"{i} {CONTENT}"), model="bench-model", usage=Usage(100, 20),
                metadata=METADATA,
            )  # fmt: skip

    async def read(self, session_id: str, count: int) -> None:
        for _ in range(count):
            await self.history.messages(session_id, limit=PAGE)

    async def aclose(self) -> None:
        await self.history.aclose()
        await self.database.aclose()


class SqliteRaw:
    """aiosqlite with the pragmas `Database` sets; sqlite3 takes the same `:name` parameters."""

    def __init__(self, path: str, decode: Callable[[Any], Any]) -> None:
        self.path = path
        self.decode = decode
        self.connection: Any = None

    async def open(self) -> None:
        import aiosqlite

        self.connection = await aiosqlite.connect(self.path, timeout=10)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=10000"):
            await self.connection.execute(f"PRAGMA {pragma}")

    async def append(self, session_id: str, count: int) -> None:
        connection = self.connection
        for i in range(count):
            params = _message_params(session_id, i)
            params["seq"] = (await connection.execute_fetchall(BUMP_SQL, params))[0][0]
            await connection.execute_fetchall(INSERT_SQL, params)
            await connection.commit()

    async def read(self, session_id: str, count: int, *, decode: bool = True) -> None:
        for _ in range(count):
            rows = list(await self.connection.execute_fetchall(READ_SQL, {"s": session_id, "limit": PAGE}))
            rows.reverse()
            if decode:
                [self.decode(row) for row in rows]

    async def aclose(self) -> None:
        await self.connection.close()


class PostgresRaw:
    def __init__(self, url: str, schema: str, decode: Callable[[Any], Any]) -> None:
        self.dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        self.schema = schema
        self.decode = decode
        self.connection: Any = None
        self.append_sql, self.append_names = positional(APPEND_POSTGRES_SQL)
        self.read_sql, self.read_names = positional(READ_SQL)

    async def open(self) -> None:
        import asyncpg

        self.connection = await asyncpg.connect(self.dsn, server_settings={"search_path": self.schema})

    async def append(self, session_id: str, count: int) -> None:
        connection = self.connection
        for i in range(count):
            params = _message_params(session_id, i)
            # A single statement outside an explicit transaction is one transaction, committed on return.
            await connection.fetchrow(self.append_sql, *(params[n] for n in self.append_names))

    async def read(self, session_id: str, count: int, *, decode: bool = True) -> None:
        params = {"s": session_id, "limit": PAGE}
        for _ in range(count):
            rows = list(await self.connection.fetch(self.read_sql, *(params[n] for n in self.read_names)))
            rows.reverse()
            if decode:
                [self.decode(row) for row in rows]

    async def aclose(self) -> None:
        await self.connection.close()


# -- measuring -----------------------------------------------------------------------------------


async def _compare(label: str, ours: Any, raw: Any, params: Params) -> list[dict[str, Any]]:
    """Rounds of appends then reads, NanoBrain and the raw driver back to back."""
    appends: tuple[list[float], list[float]] = ([], [])
    reads: tuple[list[float], list[float]] = ([], [])
    tuples: list[float] = []
    sides = (ours, raw)
    # Warm-up: connections, prepared statements, the schema check.
    for side in sides:
        await side.append("warmup", max(10, params.appends // 10))
        await side.read("warmup", max(10, params.reads // 10))
    for round_number in range(params.repeat):
        order = (0, 1) if round_number % 2 == 0 else (1, 0)
        session = f"round-{round_number}"
        for index in order:
            appends[index].append(params.appends / await timed(sides[index].append(session, params.appends)))
        for index in order:
            reads[index].append(params.reads / await timed(sides[index].read(session, params.reads)))
        tuples.append(params.reads / await timed(raw.read(session, params.reads, decode=False)))
    driver = "aiosqlite" if label == "sqlite" else "asyncpg"
    name = "SQLite" if label == "sqlite" else "PostgreSQL"
    details: dict[str, Any] = {"appends_per_round": params.appends, "reads_per_round": params.reads, "page": PAGE}
    read_details = {
        **details,
        "raw_tuples_reads_per_s_median": rounded(statistics.median(tuples)),
        "note": "the baseline decodes rows with the history's own decoder; raw_tuples leaves them as tuples",
    }
    append = figure(
        f"{label}_append",
        f"{name}: history appends, one committed transaction each",
        "appends/s",
        f"raw {driver}: the same statements and driver calls, one transaction per append",
        *appends,
        higher_is_better=True,
        target=TARGET,
        details=details,
    )
    read = figure(
        f"{label}_read",
        f"{name}: history reads of the latest {PAGE} messages",
        "reads/s",
        f"raw {driver}: the same SELECT, rows decoded by the same function",
        *reads,
        higher_is_better=True,
        target=TARGET,
        details=read_details,
    )
    return [append, read]


async def bench_sqlite(params: Params) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="nb-storage-") as folder:
        ours = NanoBrainSide(Database(f"sqlite+aiosqlite:///{folder}/nanobrain.db"))
        raw_path = f"{folder}/raw.db"
        setup = Database(f"sqlite+aiosqlite:///{raw_path}")
        await ensure_history_schema(setup)
        await setup.aclose()
        raw = SqliteRaw(raw_path, ConversationHistory(setup)._stored)
        await raw.open()
        try:
            return await _compare("sqlite", ours, raw, params)
        finally:
            await raw.aclose()
            await ours.aclose()


async def bench_postgres(params: Params) -> list[dict[str, Any]]:
    suffix = uuid.uuid4().hex[:10]
    ours_db = Database(POSTGRES_URL, schema=f"nbbench_ours_{suffix}")
    raw_db = Database(POSTGRES_URL, schema=f"nbbench_raw_{suffix}")
    await ensure_history_schema(raw_db)
    raw = PostgresRaw(POSTGRES_URL, f"nbbench_raw_{suffix}", ConversationHistory(raw_db)._stored)
    await raw.open()
    ours = NanoBrainSide(ours_db)
    try:
        return await _compare("postgres", ours, raw, params)
    finally:
        await raw.aclose()
        await ours.history.aclose()
        for database in (ours_db, raw_db):
            await database.drop_schema()
            await database.aclose()


async def measure(quick: bool, repeat: int | None = None) -> list[dict[str, Any]]:
    """Every history row (the same entry point `cache_bench.py` offers for its rows)."""
    params = Params.for_mode(quick, repeat)
    rows = await bench_sqlite(params)
    if reachable(POSTGRES_URL, 5432):
        rows += await bench_postgres(params)
    else:
        print(f"  postgres rows skipped: nothing listens at {POSTGRES_URL}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = BenchmarkArguments(__doc__, "storage", rounds=(7, 5), min_repeat=5)
    args = parser.parse(argv)
    machine = machine_info("sqlalchemy", "asyncpg", sqlite=sqlite3.sqlite_version)
    run = BenchmarkRun("NanoBrain storage benchmarks", args, machine)
    rows = run.phase("history rows", lambda: asyncio.run(measure(args.quick, args.repeat)))
    rows += run.phase("cache rows", lambda: asyncio.run(cache_bench.measure(args.quick)))
    run.finish(rows, Params.for_mode(args.quick, args.repeat).__dict__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
