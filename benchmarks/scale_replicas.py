"""The replica half of `benchmarks/scale.py` (run that; it records both halves in results/scale.json):
the OpenAI-compatible chat endpoint with one and with two `nanobrain serve` replicas.

Each replica is a process of its own under uvicorn on 127.0.0.1, as `nanobrain serve` builds it: the chat
workflow with a scripted model, history and sessions in one shared PostgreSQL database (SQLite when
PostgreSQL is not reachable: then the replicas share one file, which is said beside the figures), runs
shared through Redis when it is reachable. The load comes from this process: C concurrent httpx clients,
each sending its next `POST /v1/chat/completions` when the last one is answered, to the replicas in turn
(a client-side round robin).

Figures, for C = 16 (and 64 in a full run):

replicas_cC_rps       requests/s with two replicas; baseline: the same load on one replica.
                      Their ratio is the scale-out factor (2.0 would be linear).

`details` says where the CPU time went (seconds of CPU per request in the replicas, the load generator and
PostgreSQL), which is what limits the ratio on a machine whose cores all these processes share.
`replicas_throughput()` is the function `benchmarks/scale.py` calls for its replica half.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from common import POSTGRES_URL, REDIS_URL, BenchmarkRun, figure, reachable

ANSWER = "An answer of a few words."
BODY = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}
PARTS = ("replica_a", "replica_b", "load", "postgres")
"""Where CPU time is counted: the two replicas, this process (the load) and PostgreSQL's processes."""
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# -- a replica (child process) ------------------------------------------------------------------------
def serve_replica(port: int, database: str, redis: str) -> None:
    """What `nanobrain serve --database DATABASE --redis REDIS` builds, with a scripted model."""
    from nanobrain.infrastructure.data.journal import SqlJournalStore
    from nanobrain.interfaces.http import create_app
    from nanobrain.interfaces.http.run_bus import RunBus, open_redis
    from nanobrain.interfaces.http.serve import make_server
    from nanobrain.llm import ScriptedModel
    from nanobrain.workflows.chat import ChatApp

    async def main() -> None:
        chat = await ChatApp.open(model=ScriptedModel(respond=lambda request: ANSWER), database_url=database)
        bus = None
        if redis:
            client, prefix = open_redis(redis)
            bus = RunBus(client, prefix=prefix)
        journal = SqlJournalStore(chat.database)
        app = create_app(chat=chat, run_bus=bus, journal=journal, close_on_shutdown=True)
        print("ready", flush=True)
        await make_server(app, "127.0.0.1", port, log_level="warning").serve()
        await journal.aclose()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Replica:
    def __init__(self, database: str, redis: str) -> None:
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port), database, redis], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.process.stdout.readline()
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()
                raise SystemExit("a replica did not start")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        return process_cpu(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_cpu() -> dict[int, float]:
    """CPU seconds of each `postgres` process on this machine (the server's backends included), by pid."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    found[int(entry.name)] = process_cpu(int(entry.name))
    return found


def spent_by_postgres(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds PostgreSQL spent between two snapshots (a backend that exited meanwhile is not counted)."""
    return sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in after.items())


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


# -- the load -------------------------------------------------------------------------------------------
async def round_robin(urls: list[str], clients: int, total: int) -> tuple[float, list[str]]:
    """(requests/s answered, failures) for `total` chat requests from `clients` concurrent clients, sent to
    `urls` in turn."""
    import httpx

    failed: list[str] = []
    answered = 0
    left = total
    turn = 0
    limits = httpx.Limits(max_connections=clients * len(urls), max_keepalive_connections=clients * len(urls))
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:

        async def worker() -> None:
            nonlocal left, answered, turn
            while left > 0:
                left -= 1
                url = urls[turn % len(urls)]
                turn += 1
                try:
                    response = await client.post(f"{url}/v1/chat/completions", json=BODY)
                except httpx.TransportError as exc:  # e.g. a kept-alive connection the server just closed
                    failed.append(f"{type(exc).__name__}: {exc}")
                    continue
                if response.status_code == 200:
                    answered += 1
                else:  # counted and reported beside the figure, not hidden
                    failed.append(f"{response.status_code} {response.text[:200]}")

        for url in urls:  # warm the connections and the code paths
            for _ in range(2):
                await client.post(f"{url}/v1/chat/completions", json=BODY)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    if not answered:
        raise SystemExit(f"every chat request failed, e.g. {failed[0]}")
    return answered / elapsed, failed


@contextmanager
def shared_database(home: Path) -> Iterator[tuple[str, str]]:
    """(URL, what it is): a fresh PostgreSQL database, dropped afterwards; else one SQLite file."""
    if not reachable(POSTGRES_URL, 5432):
        yield f"sqlite+aiosqlite:///{home / 'shared.db'}", "one SQLite file (PostgreSQL not reachable)"
        return
    import asyncpg

    admin_dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    name = f"nb_bench_replicas_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(admin_dsn, timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}", "PostgreSQL (one fresh database)"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def replicas_throughput(*, quick: bool, repeat: int, run: BenchmarkRun) -> tuple[list[dict[str, Any]], list[Any]]:
    """The replica figures (rows for `figure`'s table) and the details that explain them."""
    concurrency = (16,) if quick else (16, 64)
    total = 60 if quick else 600
    redis = f"{REDIS_URL}?prefix=nb_bench_{uuid.uuid4().hex[:8]}:" if reachable(REDIS_URL, 6379) else ""
    rows: list[dict[str, Any]] = []
    details: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as folder, shared_database(Path(folder)) as (database, storage):
        first, second = Replica(database, redis), Replica(database, redis)
        try:
            cpu: dict[str, float] = {}
            requests = {"one": 0, "two": 0}
            for clients in concurrency:
                one: list[float] = []
                two: list[float] = []
                failures: list[str] = []

                def rounds(clients: int = clients, one: list[float] = one, two: list[float] = two,
                           failures: list[str] = failures) -> None:  # fmt: skip
                    for _ in range(repeat):  # interleaved, so a slow moment of the machine hits both
                        for setup, urls, out in (("one", [first.url], one), ("two", [first.url, second.url], two)):
                            before = (first.cpu_seconds(), second.cpu_seconds(), own_cpu())
                            database_before = postgres_cpu()
                            rps, failed = asyncio.run(round_robin(urls, clients, total))
                            for replica in (first, second):
                                if replica.process.poll() is not None:
                                    raise SystemExit(f"a replica exited ({replica.process.returncode}) under load")
                            after = (first.cpu_seconds(), second.cpu_seconds(), own_cpu())
                            spent = [b - a for a, b in zip(before, after, strict=True)]
                            spent.append(spent_by_postgres(database_before, postgres_cpu()))
                            for part, seconds in zip(PARTS, spent, strict=True):
                                cpu[f"{setup}_{part}"] = cpu.get(f"{setup}_{part}", 0.0) + seconds
                            requests[setup] += total - len(failed)
                            out.append(rps)
                            failures.extend(failed)

                run.phase(f"chat c={clients}, one and two replicas", rounds)
                errors = {"failed_requests": len(failures), "first_failure": failures[0] if failures else None}
                rows.append(figure(
                    f"replicas_c{clients}_rps", f"chat requests/s, 2 replicas, {clients} concurrent clients",
                    "req/s", "the same load on 1 replica", two, one, higher_is_better=True, details=errors,
                ))  # fmt: skip
            per_request: dict[str, dict[str, float]] = {}
            for setup, label in (("one", "1 replica"), ("two", "2 replicas")):
                per = per_request[setup] = {
                    part: cpu.get(f"{setup}_{part}", 0.0) / max(1, requests[setup]) * 1000
                    for part in PARTS
                }
                spent = ", ".join(f"{part} {ms:.2f}" for part, ms in per.items())
                ceiling = (os.cpu_count() or 1) * 1000 / max(sum(per.values()), 1e-9)
                text = f"CPU ms per request with {label}: {spent}; all cores on this work alone: {ceiling:.0f} req/s"
                details.append((f"cpu_{setup}", text))
            replica_ms = per_request["one"]["replica_a"]
            measured = rows[0]["baseline_median"]
            ceiling = (os.cpu_count() or 1) * 1000 / max(sum(per_request["one"].values()), 1e-9)
            details.append(("limit", (
                f"CPU: one replica answered {measured:.0f} req/s where the {os.cpu_count()} cores, running only this "
                f"work, would allow {ceiling:.0f}; the rest of their time went to the machine's other load. A second "
                "replica on the same cores brings no CPU of its own, so the ratio stays near 1 here. On separate "
                f"machines each replica would bring its cores: its own cost, {replica_ms:.1f} ms of CPU per request, "
                f"bounds it at about {1000 / max(replica_ms, 1e-9):.0f} req/s per core, beside the shared database"
            )))  # fmt: skip
        finally:
            first.stop()
            second.stop()
    details += [
        ("storage", f"history and sessions in {storage}; runs shared through Redis: {'yes' if redis else 'no'}"),
        ("cpus", f"the replicas, the load generator and the database share {os.cpu_count()} CPUs; load average "
                 f"at the end {[round(x, 1) for x in os.getloadavg()]} (other work on the machine counts too)"),
    ]  # fmt: skip
    return rows, details


if __name__ == "__main__":  # a replica, started by `Replica`
    if len(sys.argv) != 5 or sys.argv[1] != "--serve":
        raise SystemExit("run benchmarks/scale.py: this module is its replica half")
    serve_replica(int(sys.argv[2]), sys.argv[3], sys.argv[4])
