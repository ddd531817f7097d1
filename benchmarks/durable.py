"""Durable runs: what the journal costs per step, how fast a run resumes, how the journal grows.

    .venv/bin/python benchmarks/durable.py            # full run, writes results/durable.json
    .venv/bin/python benchmarks/durable.py --quick    # smoke run, writes results/durable-quick.json

Figures:

sqlite_normal / sqlite_full / postgres
        Time added per step by journaling a 10-step chain of trivial async steps, in microseconds:
        (durable run - the same chain in memory) / 10, medians over rounds; baseline: the in-memory
        chain's time per step. SQLite in WAL mode at synchronous=NORMAL survives `kill -9` (what was
        committed is in the OS); synchronous=FULL also survives a power loss (an fsync per commit).
        PostgreSQL (when reachable) commits through asyncpg. Target (SQLite NORMAL): <= 100 us.
resume_1000
        Resuming a run of a bounded loop that had completed 1,000 firings before it died: the journal
        is read, replayed and the one remaining firing runs, in milliseconds; baseline: running the
        same 1,000 firings in memory from scratch. Target: <= 50 ms.
bytes_250 / bytes_500 / bytes_1000
        Journal bytes per step for a loop whose state is a list growing by one 20-character item
        per iteration; baseline: the bytes per step of storing the whole list at every step (what a
        whole-state checkpointer writes). Linear growth shows as a constant per step. Target: <= 1 KB.
"""

from __future__ import annotations

import asyncio
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import POSTGRES_URL, BenchmarkArguments, BenchmarkRun, figure, machine_info, reachable

from nanobrain import StepError, Workflow, step
from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.data.journal import SqlJournalStore

CHAIN = 10
ITEM = "x" * 20


@step
async def inc(x: int) -> int:
    return x + 1


def chain() -> Workflow:
    return Workflow.sequence(*[inc.renamed(f"s{i}") for i in range(CHAIN)], name="chain")


class Died(Exception):
    pass


def loop(iterations: int, die_at: int | None = None) -> Workflow:
    @step
    async def grow(items: list[str]) -> list[str]:
        if len(items) == die_at:
            raise Died("the process died here")
        return [*items, ITEM]

    wf = Workflow("loop", inputs={"items": list[str]}, outputs={"items": list[str]})
    wf.add(grow)
    wf.link("inputs.items", "grow.items")
    wf.link("grow.result", "grow.items", when=lambda v: len(v) < iterations, max_iterations=iterations + 1)
    wf.link("grow.result", "outputs.items", when=lambda v: len(v) >= iterations)
    return wf


async def per_step(store: SqlJournalStore | None, runs: int) -> float:
    """Seconds per step of the chain, durable in `store` (or in memory), over `runs` runs."""
    wf = chain()
    await wf.run(x=0, durable=store)  # warm up (schema, statement caches)
    started = time.perf_counter()
    for _ in range(runs):
        await wf.run(x=0, durable=store)
    return (time.perf_counter() - started) / runs / CHAIN


def sqlite_store(folder: Path, synchronous: str) -> SqlJournalStore:
    return SqlJournalStore(f"sqlite:///{folder / f'journal-{synchronous}.db'}", synchronous=synchronous)


async def chain_rounds(make_store: Any, rounds: int, runs: int) -> tuple[list[float], list[float]]:
    added, memory = [], []
    store = make_store()
    try:
        for _ in range(rounds):
            base = await per_step(None, runs)
            durable = await per_step(store, runs)
            added.append((durable - base) * 1e6)
            memory.append(base * 1e6)
    finally:
        if isinstance(store.database, Database) and store.database.schema:
            await store.database.drop_schema()
        await store.aclose()
    return added, memory


async def resume_rounds(folder: Path, rounds: int, firings: int) -> tuple[list[float], list[float]]:
    resume_ms, fresh_ms = [], []
    store = SqlJournalStore(f"sqlite:///{folder / 'resume.db'}")
    try:
        for round_ in range(rounds):
            run_id = f"resume-{round_}"
            dying = loop(firings + 1, die_at=firings)
            try:
                await dying.run(items=[], durable=store, run_id=run_id)
            except StepError as exc:  # the "crash" after `firings` completed firings
                assert isinstance(exc.error, Died), exc
            await store.update(run_id, status="running")
            started = time.perf_counter()
            result = await loop(firings + 1).resume(run_id, durable=store)
            resume_ms.append((time.perf_counter() - started) * 1e3)
            assert len(result["items"]) == firings + 1
            started = time.perf_counter()
            await loop(firings + 1).run(items=[])
            fresh_ms.append((time.perf_counter() - started) * 1e3)
    finally:
        await store.aclose()
    return resume_ms, fresh_ms


async def journal_bytes(folder: Path, iterations: int) -> tuple[float, float]:
    store = SqlJournalStore(f"sqlite:///{folder / f'bytes-{iterations}.db'}")
    try:
        await loop(iterations).run(items=[], durable=store, run_id=f"bytes-{iterations}")
        record = await store.get(f"bytes-{iterations}")
        assert record is not None and record.status == "finished"
        whole_state = sum(
            len(pickle.dumps([ITEM] * n, protocol=pickle.HIGHEST_PROTOCOL)) for n in range(1, iterations + 1)
        )
        return record.bytes / iterations, whole_state / iterations
    finally:
        await store.aclose()


async def measure(args: Any, bench: BenchmarkRun) -> list[dict[str, Any]]:
    rounds = args.repeat
    runs = 20 if args.quick else 200
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for key, synchronous, target in (("sqlite_normal", "NORMAL", 100.0), ("sqlite_full", "FULL", None)):
            started = time.perf_counter()
            added, memory = await chain_rounds(lambda s=synchronous: sqlite_store(folder, s), rounds, runs)
            print(f"  {key} done in {time.perf_counter() - started:.1f} s", flush=True)
            rows.append(
                figure(
                    key,
                    f"added per journaled step, SQLite WAL synchronous={synchronous}",
                    "us",
                    "the same 10-step chain in memory, per step",
                    added,
                    memory,
                    target=target,
                    target_on="value",
                    details={"runs_per_round": runs, "steps": CHAIN},
                )
            )
        if reachable(POSTGRES_URL, 5432):
            import uuid

            started = time.perf_counter()
            added, memory = await chain_rounds(
                lambda: SqlJournalStore(Database(POSTGRES_URL, schema=f"bench_{uuid.uuid4().hex[:10]}")),
                rounds,
                max(10, runs // 4),
            )
            print(f"  postgres done in {time.perf_counter() - started:.1f} s", flush=True)
            rows.append(
                figure("postgres", "added per journaled step, PostgreSQL (asyncpg)", "us",
                       "the same 10-step chain in memory, per step", added, memory)
            )
        else:
            print(f"  postgres left out: {POSTGRES_URL} is not reachable", flush=True)
        firings = 200 if args.quick else 1000
        started = time.perf_counter()
        resume_ms, fresh_ms = await resume_rounds(folder, rounds, firings)
        print(f"  resume done in {time.perf_counter() - started:.1f} s", flush=True)
        rows.append(
            figure("resume_1000", f"resume a run of {firings} completed firings", "ms",
                   f"the same {firings} firings run in memory from scratch", resume_ms, fresh_ms,
                   target=50.0, target_on="value", details={"firings": firings})
        )
        for iterations in (250, 500, 1000):
            per, whole = await journal_bytes(folder, iterations)
            rows.append(
                figure(f"bytes_{iterations}", f"journal bytes per step, growing list, {iterations} iterations",
                       "B", "the whole list stored at every step", [per], [whole],
                       target=1024.0, target_on="value")
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = BenchmarkArguments(__doc__, "durable", rounds=(7, 3))
    args = parser.parse(argv)
    bench = BenchmarkRun("NanoBrain durable-run benchmarks", args, machine_info("sqlalchemy", "asyncpg"))
    rows = asyncio.run(measure(args, bench))
    per_step = {row["key"]: row["value_median"] for row in rows if row["key"].startswith("bytes_")}
    growth = statistics.pstdev(per_step.values()) if per_step else 0.0
    bench.finish(
        rows,
        {"chain_steps": CHAIN, "item_chars": len(ITEM)},
        details=[("bytes", f"bytes per step at 250/500/1000 iterations: {per_step} (spread {growth:.1f} B: linear)")],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
