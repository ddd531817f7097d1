"""Scaling out: NanoBrain workflows across a real Dask cluster, beside Dask's own API.

    .venv/bin/python benchmarks/scale.py            # full run (~1 min), writes results/scale.json
    .venv/bin/python benchmarks/scale.py --quick    # smoke run (~20 s), writes results/scale-quick.json

Figures (each printed beside its baseline, with the ratio):

dask    a fan-out of 100 CPU-bound steps of 50 ms (CPU time) on a Dask cluster started here as separate
        processes (`dask scheduler` and two `dask worker` processes, one thread each, on 127.0.0.1):
        one workflow run with 100 steps on a `DaskExecutor` at the scheduler's address; steps/s.
        Baseline: `client.map` of the same function over 100 items and `client.gather`, on the same
        cluster, interleaved round by round. Goal: at least 0.9x its throughput.
        (Two workers on two cores: the ideal is 40 steps/s, less whatever else the machine is running.)

replicas_c16_rps, replicas_c64_rps
        the OpenAI-compatible chat endpoint (scripted model) on two `nanobrain serve` replicas sharing
        PostgreSQL and Redis, behind a client-side round robin, beside the same load on one replica
        (its code is in `scale_replicas.py`).

Each section is a function that starts what it needs, measures, stops it and returns its figure rows;
`main` runs every section.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import BenchmarkArguments, BenchmarkRun, figure, number
from scale_replicas import replicas_throughput

import nanobrain as nb

STEP_SECONDS = 0.05
WORKERS = 2


@dataclass(frozen=True)
class Params:
    repeat: int
    fan_out: int

    @classmethod
    def for_mode(cls, quick: bool, repeat: int) -> Params:
        return cls(repeat=repeat, fan_out=20 if quick else 100)


def burn(i: int) -> int:
    """CPU-bound: `STEP_SECONDS` of this process's CPU time (sent to the workers by value: it lives in __main__)."""
    end = time.process_time() + STEP_SECONDS
    while time.process_time() < end:
        pass
    return i


# -- the Dask half -----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def dask_cluster(workers: int = WORKERS) -> Iterator[str]:
    """`dask scheduler` and `workers` single-threaded `dask worker` processes on 127.0.0.1; yields the address."""
    dask = Path(sys.executable).parent / "dask"
    command = str(dask) if dask.exists() else shutil.which("dask") or "dask"
    port = _free_port()
    with tempfile.TemporaryFile() as log:  # the cluster's own log, kept out of the report
        yield from _run_cluster(command, port, workers, {"stdout": subprocess.DEVNULL, "stderr": log})


def _run_cluster(command: str, port: int, workers: int, quiet: dict[str, Any]) -> Iterator[str]:
    from distributed import Client

    address = f"tcp://127.0.0.1:{port}"
    processes = [
        subprocess.Popen([command, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet)
    ]
    try:
        for i in range(workers):
            worker = [command, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard"]
            processes.append(subprocess.Popen([*worker, "--name", f"w{i}"], **quiet))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def fan_out_workflow(n: int, executor: nb.Executor) -> nb.Workflow:
    """`n` steps running `burn`, each fed from the workflow's input and feeding an output of its own."""
    steps = [nb.FunctionStep(burn, f"s{i}", executor=executor) for i in range(n)]
    links = [nb.Link("inputs.i", f"s{i}.i") for i in range(n)]
    links += [nb.Link(f"s{i}.result", f"outputs.r{i}") for i in range(n)]
    return nb.Workflow("fan_out", inputs={"i": int}, outputs={f"r{i}": int for i in range(n)}, steps=steps, links=links)


async def _dask_rounds(address: str, params: Params) -> tuple[list[float], list[float]]:
    from distributed import Client

    n = params.fan_out
    executor = nb.DaskExecutor(address)
    workflow = fan_out_workflow(n, executor)
    client = await Client(address, asynchronous=True)
    try:

        async def nanobrain_round() -> float:
            started = time.perf_counter()
            outputs = await workflow.run(i=1)
            elapsed = time.perf_counter() - started
            assert len(outputs) == n
            return n / elapsed

        async def dask_round() -> float:
            started = time.perf_counter()
            results = await client.gather(client.map(burn, range(n), pure=False))
            elapsed = time.perf_counter() - started
            assert len(results) == n
            return n / elapsed

        await nanobrain_round()  # warm up: connections, the workers' first unpickling
        await dask_round()
        ours: list[float] = []
        theirs: list[float] = []
        for round_ in range(params.repeat):
            # Alternate which goes first, so that neither always meets a cluster the other just warmed.
            if round_ % 2 == 0:
                ours.append(await nanobrain_round())
                theirs.append(await dask_round())
            else:
                theirs.append(await dask_round())
                ours.append(await nanobrain_round())
        return ours, theirs
    finally:
        await workflow.aclose()
        await client.close()


def dask_fanout(params: Params) -> list[dict[str, Any]]:
    """The `dask` figure: a workflow's fan-out over a real cluster beside `client.map` of the same function."""
    with dask_cluster() as address:
        ours, theirs = asyncio.run(_dask_rounds(address, params))
    ideal = WORKERS / STEP_SECONDS
    return [
        figure(
            "dask",
            f"fan-out of {params.fan_out} CPU-bound {STEP_SECONDS * 1000:g} ms steps on a 2-worker Dask cluster",
            "steps/s",
            f"client.map + gather of the same function on the same cluster (ideal {ideal:g} steps/s)",
            ours,
            theirs,
            higher_is_better=True,
            target=0.9,
            details={"workers": WORKERS, "threads_per_worker": 1, "ideal_steps_per_second": ideal},
        )
    ]


# -- the run -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = BenchmarkArguments(__doc__, "scale", rounds=(5, 2)).parse(argv)
    params = Params.for_mode(args.quick, args.repeat)
    run = BenchmarkRun("NanoBrain scale-out benchmarks", args)
    rows = [*run.phase("dask", lambda: dask_fanout(params))]
    dask = rows[0]
    details = [
        (
            "dask",
            f"{number(dask['value_median'])} steps/s through NanoBrain, {number(dask['baseline_median'])} through "
            f"client.map (median of {params.repeat} rounds; ideal {number(dask['details']['ideal_steps_per_second'])})",
        )
    ]
    replica_rows, replica_details = replicas_throughput(quick=args.quick, repeat=max(2, params.repeat), run=run)
    rows += replica_rows
    details += replica_details
    run.finish(rows, params.__dict__, details=details)
    return 0


if __name__ == "__main__":
    sys.exit(main())
