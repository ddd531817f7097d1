"""Scaling out on Dask: CPU-bound work spread over the workers of a cluster.

The work is a plain function; the workflow maps it over a list and gives each item to the Dask
executor. `DaskExecutor()` starts a local cluster (worker processes on 127.0.0.1);
`DaskExecutor("tcp://scheduler:8786")` uses a running one. Nothing else changes: the same
workflow runs in process when the executor is left out. `dask_scale_out.yaml` is the same in YAML.
"""

from __future__ import annotations

import asyncio
import os

import nanobrain as nb
from nanobrain.core.executors import DaskExecutor, Executor


def count_primes(limit: int) -> dict:
    """How many primes are below `limit`, and which process counted them (runs on a worker)."""
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\x00\x00"[:limit]
    for n in range(2, int(limit**0.5) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytearray(len(range(n * n, limit, n)))
    return {"limit": limit, "primes": sum(sieve), "pid": os.getpid()}


@nb.step
def total(result: list[dict]) -> int:
    """Add up the counts (runs in the workflow's process)."""
    return sum(item["primes"] for item in result)


def build(executor: Executor | None = None) -> nb.Workflow:
    # One firing of count_primes per item, at most 4 at a time, each on the executor.
    spread = nb.Map(count_primes, executor=executor, max_concurrency=4, name="count")
    return nb.Workflow.sequence(spread, total, name="primes")


async def main() -> None:
    executor = DaskExecutor(n_workers=2)  # or DaskExecutor("tcp://scheduler:8786")
    try:
        workflow = build(executor)
        print(await workflow.run(limit=[100_000, 200_000, 300_000, 400_000]))  # {'result': 87433}
    finally:
        await executor.aclose()


if __name__ == "__main__":
    asyncio.run(main())
