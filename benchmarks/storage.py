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

Rows from `benchmarks/cache_bench.py` (the cache hierarchy's L1/L2/L3 hit latency), when that file
exists, are measured by its `measure(quick)` and written beside these.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import importlib.util
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nanobrain as nb
from nanobrain.infrastructure.data import history_sql
from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.data.history import ConversationHistory, to_micros
from nanobrain.infrastructure.data.history_sql import ensure_history_schema, positional
from nanobrain.llm.messages import Message, Usage

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
POSTGRES_URL = os.environ.get("NANOBRAIN_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
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


def figure(key: str, name: str, unit: str, baseline: str, values: list[float], baselines: list[float],
           details: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """One result row (the shape every storage benchmark row has, cache rows included)."""
    ratio = statistics.median(values) / statistics.median(baselines)
    return {
        "key": key,
        "name": name,
        "unit": unit,
        "value_min": _round(min(values)),
        "value_median": _round(statistics.median(values)),
        "baseline_min": _round(min(baselines)),
        "baseline_median": _round(statistics.median(baselines)),
        "ratio": _round(ratio),
        "higher_is_better": True,
        "target": TARGET,
        "target_op": ">=",
        "target_on": "ratio",
        "target_met": ratio >= TARGET,
        "baseline": baseline,
        "rounds": {"values": [_round(v) for v in values], "baselines": [_round(v) for v in baselines]},
        "details": details or {},
    }


def _round(x: float) -> float:
    return float(f"{x:.4g}")


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


async def _rate(count: int, run: Awaitable[None]) -> float:
    """Operations per second of `run` (a coroutine doing `count` operations)."""
    gc.collect()
    started = time.perf_counter()
    await run
    return count / (time.perf_counter() - started)


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
            appends[index].append(await _rate(params.appends, sides[index].append(session, params.appends)))
        for index in order:
            reads[index].append(await _rate(params.reads, sides[index].read(session, params.reads)))
        tuples.append(await _rate(params.reads, raw.read(session, params.reads, decode=False)))
    driver = "aiosqlite" if label == "sqlite" else "asyncpg"
    name = "SQLite" if label == "sqlite" else "PostgreSQL"
    details: dict[str, Any] = {"appends_per_round": params.appends, "reads_per_round": params.reads, "page": PAGE}
    read_details = {
        **details,
        "raw_tuples_reads_per_s_median": _round(statistics.median(tuples)),
        "note": "the baseline decodes rows with the history's own decoder; raw_tuples leaves them as tuples",
    }
    return [
        figure(
            f"{label}_append", f"{name}: history appends, one committed transaction each", "appends/s",
            f"raw {driver}: the same statements and driver calls, one transaction per append",
            appends[0], appends[1], details,
        ),
        figure(
            f"{label}_read", f"{name}: history reads of the latest {PAGE} messages", "reads/s",
            f"raw {driver}: the same SELECT, rows decoded by the same function", reads[0], reads[1], read_details,
        ),
    ]  # fmt: skip


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


def _postgres_reachable() -> bool:
    match = re.search(r"@([^:/]+)(?::(\d+))?/", POSTGRES_URL)
    host, port = (match.group(1), int(match.group(2) or 5432)) if match else ("127.0.0.1", 5432)
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


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
    if _postgres_reachable():
        rows += await bench_postgres(params)
    else:
        print(f"  postgres rows skipped: nothing listens at {POSTGRES_URL}", flush=True)
    return rows


async def cache_rows(quick: bool) -> list[dict[str, Any]]:
    """HOOK: rows of benchmarks/cache_bench.py (cache hierarchy hit latency), if that file exists."""
    path = HERE / "cache_bench.py"
    if not path.exists():
        print("  cache rows skipped: benchmarks/cache_bench.py does not exist yet", flush=True)
        return []
    spec = importlib.util.spec_from_file_location("cache_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(await module.measure(quick))


# -- reporting -----------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        import sqlite3

        import asyncpg
        import sqlalchemy

        info.update(sqlite=sqlite3.sqlite_version, sqlalchemy=sqlalchemy.__version__, asyncpg=asyncpg.__version__)
    except ImportError:
        pass
    return info


def git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True, text=True)
        return head + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def _fmt(x: Any) -> str:
    if not isinstance(x, int | float):
        return str(x)
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def render(rows: dict[str, dict[str, Any]]) -> str:
    header = ("", "figure", "unit", "min", "median", "base min", "base med", "ratio", "target", "met")
    table = [header]
    for key, r in rows.items():
        on = "value" if r.get("target_on") == "value" else "ratio"
        target = f"{on} {r.get('target_op', '')} {r['target']:g}" if r.get("target") is not None else "-"
        met = "-" if r.get("target_met") is None else ("yes" if r["target_met"] else "NO")
        cells = [r.get(k, "-") for k in ("value_min", "value_median", "baseline_min", "baseline_median")]
        table.append(
            (key, str(r.get("name", "")), str(r.get("unit", "")), *map(_fmt, cells), _fmt(r.get("ratio", "-")),
             target, met)
        )  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    right = {3, 4, 5, 6, 7}
    lines = []
    for n, row in enumerate(table):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("-" * len(lines[0]))
    lines += ["", "baselines (same process, interleaved with the NanoBrain rounds):"]
    lines += [f"  {key:<16} {r.get('baseline', '')}" for key, r in rows.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few operations per round, for a smoke run")
    parser.add_argument("--output", type=Path, help="JSON path (default: benchmarks/results/storage[-quick].json)")
    parser.add_argument("--repeat", type=int, help="measurement rounds per figure (default: 7, quick: 5)")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 5:
        parser.error("--repeat must be at least 5 (min and median need a few rounds)")
    params = Params.for_mode(args.quick, args.repeat)
    output = args.output or HERE / "results" / ("storage-quick.json" if args.quick else "storage.json")
    started = time.perf_counter()
    info = machine_info()
    print(
        f"NanoBrain storage benchmarks ({'quick' if args.quick else 'full'}, {params.repeat} rounds) - "
        f"Python {info['python']}, {info['cpu_count']} CPUs, load average {info.get('load_average')}",
        flush=True,
    )
    rows = asyncio.run(measure(args.quick, args.repeat))
    rows += asyncio.run(cache_rows(args.quick))
    summaries = {row["key"]: {k: v for k, v in row.items() if k != "key"} for row in rows}
    elapsed = time.perf_counter() - started
    report = {
        "machine": info,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nanobrain": {"version": nb.__version__, "commit": git_commit()},
        "mode": "quick" if args.quick else "full",
        "params": params.__dict__,
        "elapsed_s": round(elapsed, 1),
        "benchmarks": summaries,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(render(summaries))
    print(f"\nwrote {output} ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
