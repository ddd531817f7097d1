"""Cache hit latency per level: L1 (in-process LRU), L2 (Redis), L3 (SQL), through `CacheHierarchy.get`.

    .venv/bin/python benchmarks/cache_bench.py            # full run: 9 rounds, writes results/cache_bench.json
    .venv/bin/python benchmarks/cache_bench.py --quick    # smoke run: 5 rounds, fewer lookups (-quick.json)
    .venv/bin/python benchmarks/cache_bench.py --output /tmp/cache.json

`benchmarks/storage.py` includes these rows through `measure(quick)`.

Figures, in µs per lookup (the min and median of the per-round means):

L1      a hit in the in-process LRU, through the whole hierarchy object; baseline: a plain `dict.get`.
        The target is on the value (a dict lookup is not something a cache can approach in ratio).
L2      a hit in Redis after an L1 miss, including the copy into L1; baseline: a raw `GET` of the same
        keys on the same `redis.asyncio` client.
L3      a hit in SQL (SQLite file, and PostgreSQL when reachable) after misses in L1 and Redis,
        including the copies into L1 and Redis; baseline: a raw `SELECT value ... WHERE key = ...`
        through the same SQLAlchemy engine. The hierarchy does a Redis GET (miss) and a Redis SET
        (promotion) on top of the select, which is what its target allows for.

Each round measures the hierarchy and then the baseline over the same keys; the faster levels are
emptied (untimed) before each round so that every lookup is served by the level being measured.
Redis: NANOBRAIN_BENCH_REDIS_URL (default redis://127.0.0.1:6379/0); PostgreSQL:
NANOBRAIN_BENCH_POSTGRES_URL (default postgresql+asyncpg://postgres@127.0.0.1:5432/test). A level
whose server is unreachable is left out and said so.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from common import POSTGRES_URL, REDIS_URL, BenchmarkArguments, BenchmarkRun, figure, reachable, timed

from nanobrain.infrastructure.cache import CacheHierarchy, LRUCache
from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.data.kv import KeyValueStore, RedisKeyValueStore, SQLKeyValueStore

VALUE = b"x" * 512  # about the size of a short cached completion

#: key -> (upper bound, what it bounds: the hierarchy's median "value" or the "ratio" to the baseline)
TARGETS: dict[str, tuple[float, str]] = {
    "L1": (10.0, "value"),
    "L2": (1.5, "ratio"),
    "L3": (2.5, "ratio"),
    "L3-pg": (2.5, "ratio"),
}


def sizes(quick: bool) -> dict[str, int]:
    """Rounds, and lookups per round for L1 (fast) and for L2/L3 (slow)."""
    if quick:
        return {"rounds": 5, "fast_lookups": 2000, "slow_lookups": 100}
    return {"rounds": 9, "fast_lookups": 20000, "slow_lookups": 500}


def _row(
    key: str, name: str, baseline: str, values: list[float], baselines: list[float], lookups: int
) -> dict[str, Any]:
    """A row in µs per lookup, with the level's target from TARGETS."""
    target, target_on = TARGETS[key]
    details = {"lookups_per_round": lookups}
    return figure(key, name, "us", baseline, values, baselines, target=target, target_on=target_on, details=details)


async def _bench_l1(cache: CacheHierarchy, rounds: int, count: int) -> dict[str, Any]:
    await cache.set("bench:l1", VALUE)
    plain = {"bench:l1": VALUE}

    async def hierarchy() -> None:
        get = cache.get
        for _ in range(count):
            await get("bench:l1")

    async def dict_lookup() -> None:
        get = plain.get
        for _ in range(count):
            get("bench:l1")

    await hierarchy()  # warm-up
    await dict_lookup()
    values, baselines = [], []
    for _ in range(rounds):
        values.append(await timed(hierarchy()) / count * 1e6)
        baselines.append(await timed(dict_lookup()) / count * 1e6)
    return _row("L1", "L1 hit (in-process LRU)", "dict.get of the same key", values, baselines, count)


async def _bench_slow_level(
    key: str,
    name: str,
    baseline_name: str,
    cache: CacheHierarchy,
    target: KeyValueStore,
    faster: Sequence[KeyValueStore],
    raw_get: Callable[[str], Awaitable[Any]],
    rounds: int,
    count: int,
) -> dict[str, Any]:
    keys = [f"bench:{key}:{uuid.uuid4().hex[:8]}:{i}" for i in range(count)]
    # Entries as the hierarchy writes them, placed only in the level under test.
    only = CacheHierarchy([target])
    for k in keys:
        await only.set(k, VALUE)

    async def empty_faster_levels() -> None:
        for level in faster:
            if isinstance(level, LRUCache):
                level.clear()
            else:
                await level.delete_many(keys)

    async def hierarchy() -> None:
        get = cache.get
        for k in keys:
            if await get(k) is None:
                raise RuntimeError(f"{name}: key {k!r} was not found")

    async def raw() -> None:
        for k in keys:
            await raw_get(k)

    await empty_faster_levels()
    await hierarchy()  # warm-up (connections, statement caches)
    await raw()
    values, baselines = [], []
    for _ in range(rounds):
        await empty_faster_levels()
        values.append(await timed(hierarchy()) / count * 1e6)
        baselines.append(await timed(raw()) / count * 1e6)
    await target.delete_many(keys)
    for level in faster:
        await level.delete_many(keys)
    return _row(key, name, baseline_name, values, baselines, count)


def _sql_raw_get(db: Database, namespace: str) -> Callable[[str], Awaitable[Any]]:
    from sqlalchemy import text

    select = text("SELECT value FROM nanobrain_kv WHERE namespace = :ns AND key = :k")

    async def raw_get(key: str) -> Any:
        async with db.engine.connect() as connection:
            return (await connection.execute(select, {"ns": namespace, "k": key})).scalar()

    return raw_get


async def measure(quick: bool) -> list[dict[str, Any]]:
    """L1/L2/L3 hit latency rows (see the module docstring); levels whose server is unreachable are left out."""
    size = sizes(quick)
    rounds, fast_count, slow_count = size["rounds"], size["fast_lookups"], size["slow_lookups"]
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    tmp = tempfile.TemporaryDirectory(prefix="nanobrain-cache-bench-")
    databases = [("L3", "L3 hit (SQL, SQLite file)", Database(f"sqlite+aiosqlite:///{Path(tmp.name) / 'cache.db'}"))]
    if reachable(POSTGRES_URL, 5432):
        schema = f"nbbench_{uuid.uuid4().hex[:12]}"
        databases.append(("L3-pg", "L3 hit (SQL, PostgreSQL)", Database(POSTGRES_URL, schema=schema)))
    else:
        notes.append(f"L3-pg left out: PostgreSQL is not reachable at {POSTGRES_URL}")
    redis_store: RedisKeyValueStore | None = None
    if reachable(REDIS_URL, 6379):
        redis_store = RedisKeyValueStore(REDIS_URL, prefix=f"nbbench:{uuid.uuid4().hex[:12]}:")
    else:
        notes.append(f"L2 left out: Redis is not reachable at {REDIS_URL}")
    try:
        for index, (key, name, db) in enumerate(databases):
            l1 = LRUCache(max(fast_count, slow_count) * 2)
            l3 = SQLKeyValueStore(db, "bench")
            levels: list[KeyValueStore] = [l1] + ([redis_store] if redis_store else []) + [l3]
            cache = CacheHierarchy(levels)
            if index == 0:
                rows.append(await _bench_l1(cache, rounds, fast_count))
                if redis_store is not None:
                    client = redis_store.client
                    prefix = redis_store.prefix

                    async def redis_get(k: str, client: Any = client, prefix: str = prefix) -> Any:
                        return await client.get(prefix + k)

                    rows.append(
                        await _bench_slow_level(
                            "L2",
                            "L2 hit (Redis)",
                            "raw redis GET, same client",
                            cache,
                            redis_store,
                            [l1],
                            redis_get,
                            rounds,
                            slow_count,
                        )
                    )
            rows.append(
                await _bench_slow_level(
                    key,
                    name,
                    "raw SQL SELECT through the same engine",
                    cache,
                    l3,
                    levels[:-1],
                    _sql_raw_get(db, "bench"),
                    rounds,
                    slow_count,
                )
            )
    finally:
        if redis_store is not None:
            await redis_store.aclose()
        for _, _, db in databases:
            if db.dialect == "postgresql":
                await db.drop_schema()
            await db.aclose()
        tmp.cleanup()
    for note in notes:
        print(f"  note: {note}", file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = BenchmarkArguments(__doc__, "cache_bench").parse(argv)
    run = BenchmarkRun("NanoBrain cache hit latency", args)
    rows = run.phase("L1, L2, L3", lambda: asyncio.run(measure(args.quick)))
    run.finish(rows, sizes(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
