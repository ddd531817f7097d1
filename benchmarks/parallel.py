"""Parallel processing benchmarks: processor pools, balancers, breakers, failover. Real clock, real sleeps.

    .venv/bin/python benchmarks/parallel.py            # full run (~2 min), writes results/parallel.json
    .venv/bin/python benchmarks/parallel.py --quick    # smoke run (~15 s), writes results/parallel-quick.json

Figures (each printed beside its baseline, with the ratio):

T       64 processors of 50 ms simulated latency (asyncio.sleep), one request at a time each, 10,000
        requests submitted at once: throughput as a fraction of the ideal (64 / 50 ms = 1,280 requests/s).
        Baseline: the same work through a bare asyncio.Semaphore(64) + gather.
D       dispatch overhead: 10,000 requests to 64 processors whose work only yields once
        (`await asyncio.sleep(0)`), so every request goes through the queue; us per request.
        Baseline: asyncio.Semaphore(64) + gather of the same work.
D0      the same with work that returns at once (the pool's fast path: no queueing); us per request.
F       64 processors of 50 ms, 13 of them (20%) failing every call, requests arriving at 700/s (70% of
        the working processors' capacity), deadline 1 s, failover on other processors and breakers:
        share of requests that succeeded within the deadline (%); p50 and p99 latency and breaker trips
        are details. Baseline: the same pool without failover or breakers (each request tried once).
F.p50   median latency of F (ms); baseline: the same load with no failing processor.
F.p99   99th percentile latency of F (ms); baseline: the same load with no failing processor.
B.name  16 processors of 50 ms (4 slots each), one of them slow (500 ms), requests arriving at 500/s:
        p99 latency (ms) with each balancer. Baseline: round-robin. Fastest-response and
        power-of-two-choices should beat it.

`--repeat` sets the rounds of T, D and D0; F and B do a fixed number (3 and 3, quick: 2 and 1).
A repetition is one whole round; min and median are over rounds (for a rate or a share, min is the
worst round), ratios use medians.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
from dataclasses import dataclass
from typing import Any

from common import BenchmarkArguments, BenchmarkRun, figure, number, rounded, timed

import nanobrain as nb
from nanobrain.infrastructure.parallel import BreakerPolicy, ParallelEvent, ProcessorPool
from nanobrain.testing import FaultyStep, SimulatedProcessor

PROCESSORS = 64
LATENCY = 0.05
BALANCER_NAMES = ("round_robin", "least_loaded", "fastest_response", "weighted", "power_of_two")


@dataclass(frozen=True)
class Params:
    repeat: int  # rounds of T, D, D0
    throughput_requests: int
    throughput_baseline_rounds: int
    dispatch_requests: int
    failing_requests: int
    failing_rounds: int
    balancer_requests: int
    balancer_rounds: int

    @classmethod
    def for_mode(cls, quick: bool, repeat: int | None) -> Params:
        if quick:
            return cls(repeat or 2, 1280, 1, 2000, 700, 2, 600, 1)
        return cls(repeat or 5, 10_000, 1, 10_000, 2100, 3, 1000, 3)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


# -- workloads -------------------------------------------------------------------------------
class Work(nb.Step):
    """A processor whose work is `await asyncio.sleep(latency)` (0: yield once; None: do not yield)."""

    def __init__(self, name: str, latency: float | None) -> None:
        super().__init__(name, inputs=["request"], outputs=["response"])
        self.latency = latency

    async def process(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if self.latency is not None:
            await asyncio.sleep(self.latency)
        return {"response": inputs["request"]}


async def pool_requests(pool: ProcessorPool, count: int) -> None:
    results = await asyncio.gather(*[pool.call({"request": i}) for i in range(count)])
    assert results[-1] == {"response": count - 1}


async def semaphore_requests(count: int, latency: float | None) -> None:
    semaphore = asyncio.Semaphore(PROCESSORS)

    async def work(i: int) -> int:
        if latency is not None:
            await asyncio.sleep(latency)
        return i

    async def limited(i: int) -> int:
        async with semaphore:
            return await work(i)

    results = await asyncio.gather(*[limited(i) for i in range(count)])
    assert results[-1] == count - 1


def work_pool(latency: float | None, **options: Any) -> ProcessorPool:
    return ProcessorPool([Work(f"p{i}", latency) for i in range(PROCESSORS)], **options)


# -- T: throughput ---------------------------------------------------------------------------
async def bench_throughput(p: Params) -> dict[str, Any]:
    n = p.throughput_requests
    ideal = n * LATENCY / PROCESSORS
    await pool_requests(work_pool(LATENCY), PROCESSORS * 4)  # warm-up
    values = []
    for _ in range(p.repeat):
        pool = work_pool(LATENCY)  # a fresh pool a round, built before the clock starts
        values.append(ideal / await timed(pool_requests(pool, n)))
    baselines = [ideal / await timed(semaphore_requests(n, LATENCY)) for _ in range(p.throughput_baseline_rounds)]
    return figure(
        "T",
        f"throughput, {PROCESSORS} processors of {LATENCY * 1e3:g} ms, {n:,} requests",
        "of ideal",
        f"asyncio.Semaphore({PROCESSORS}) + gather of the same sleeps",
        values,
        baselines,
        higher_is_better=True,
        target=0.9,
        target_on="value",
        details={
            "ideal_seconds": rounded(ideal),
            "requests_per_second_median": rounded(statistics.median(values) * PROCESSORS / LATENCY),
            "ideal_requests_per_second": rounded(PROCESSORS / LATENCY),
        },
    )


# -- D, D0: dispatch overhead ------------------------------------------------------------------
async def bench_dispatch(p: Params, latency: float | None) -> dict[str, Any]:
    n = p.dispatch_requests
    pool = work_pool(latency)
    await pool_requests(pool, n)  # warm-up
    await semaphore_requests(n, latency)
    values, baselines = [], []
    for _ in range(p.repeat):
        values.append(await timed(pool_requests(pool, n)) / n * 1e6)
        baselines.append(await timed(semaphore_requests(n, latency)) / n * 1e6)
    yielding = latency is not None
    return figure(
        "D" if yielding else "D0",
        f"dispatch, {n:,} requests, work {'yields once' if yielding else 'returns at once'}",
        "us/request",
        f"asyncio.Semaphore({PROCESSORS}) + gather of the same work",
        values,
        baselines,
        details={
            "overhead_us_per_request_median": rounded(statistics.median(values) - statistics.median(baselines)),
            "queue_high_water": pool.queue.high_water,
        },
    )


# -- F: a fifth of the processors failing ----------------------------------------------------
FAILING = round(PROCESSORS * 0.2)
ARRIVALS_PER_SECOND = 700
DEADLINE = 1.0


async def open_loop(pool: ProcessorPool, count: int, rate: float) -> tuple[list[float], int]:
    """Send `count` requests at `rate` per second; returns the latencies of the successes and the failures."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        started = loop.time()
        try:
            await pool.call({"request": i})
        except Exception:  # counted: a failed request is the figure, not an error of the benchmark
            failures += 1
            return
        latencies.append(loop.time() - started)

    tasks = []
    start = loop.time()
    for i in range(count):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return latencies, failures


def failing_pool(failing: int, resilient: bool, trips: list[ParallelEvent]) -> ProcessorPool:
    """64 processors, `failing` of them (evenly spread) failing every call at once."""
    broken = set(range(0, PROCESSORS, PROCESSORS // failing)[:failing]) if failing else set()
    steps: list[nb.Step] = [
        FaultyStep(SimulatedProcessor(f"p{i}", latency=LATENCY), fail_rate=1.0, seed=i)
        if i in broken
        else SimulatedProcessor(f"p{i}", latency=LATENCY)
        for i in range(PROCESSORS)
    ]
    if not resilient:
        return ProcessorPool(steps, deadline=DEADLINE, breaker=None, failover=None)
    return ProcessorPool(
        steps,
        balancer="least_loaded",
        deadline=DEADLINE,
        breaker=BreakerPolicy(failure_rate=0.5, window=10.0, min_calls=3, cool_down=1.0),
        failover=nb.RetryPolicy(attempts=4, initial=0.01, max_wait=0.1, jitter=0.01),
        on_event=lambda e: trips.append(e) if e.name == "breaker_opened" else None,
    )


async def bench_failing(p: Params) -> list[dict[str, Any]]:
    n = p.failing_requests
    success, p50, p99, trips_per_round, failed_attempts = [], [], [], [], []
    for _ in range(p.failing_rounds):
        trips: list[ParallelEvent] = []
        pool = failing_pool(FAILING, True, trips)
        gc.collect()
        latencies, _ = await open_loop(pool, n, ARRIVALS_PER_SECOND)
        success.append(100.0 * len(latencies) / n)
        p50.append(percentile(latencies, 50) * 1e3)
        p99.append(percentile(latencies, 99) * 1e3)
        trips_per_round.append(len(trips))
        failed_attempts.append(sum(p.failures for p in pool.processors))
    naive_latencies, naive_failures = await open_loop(failing_pool(FAILING, False, []), n, ARRIVALS_PER_SECOND)
    healthy_p50, healthy_p99 = [], []
    for _ in range(max(1, p.failing_rounds - 1)):
        healthy, _ = await open_loop(failing_pool(0, True, []), n, ARRIVALS_PER_SECOND)
        healthy_p50.append(percentile(healthy, 50) * 1e3)
        healthy_p99.append(percentile(healthy, 99) * 1e3)
    scenario = f"{FAILING} of {PROCESSORS} processors failing, {ARRIVALS_PER_SECOND}/s, {n:,} requests"
    healthy_load = "the same load with no failing processor"
    return [
        figure(
            "F",
            f"success within {DEADLINE:g} s deadline, {scenario}",
            "%",
            "the same pool without failover or breakers (each request tried once)",
            success,
            [100.0 * len(naive_latencies) / n],
            higher_is_better=True,
            target=100.0,
            target_on="value",
            details={
                "failing_processors": FAILING,
                "requests_per_round": n,
                "arrivals_per_second": ARRIVALS_PER_SECOND,
                "deadline_s": DEADLINE,
                "breaker_trips_per_round": trips_per_round,
                "failed_attempts_per_round": failed_attempts,
                "p50_ms_per_round": [rounded(x) for x in p50],
                "p99_ms_per_round": [rounded(x) for x in p99],
                "baseline_failed_requests": naive_failures,
            },
        ),
        figure("F.p50", "median latency, same scenario", "ms", healthy_load, p50, healthy_p50),
        figure(
            "F.p99",
            "p99 latency, same scenario",
            "ms",
            healthy_load,
            p99,
            healthy_p99,
            details={"breaker_trips_median": statistics.median(trips_per_round)},
        ),
    ]


# -- B: balancers under one slow processor ------------------------------------------------------
BALANCED_PROCESSORS = 16
SLOTS = 4
SLOW = 0.5
BALANCER_ARRIVALS = 500


def slow_one_pool(balancer: str, seed: int) -> ProcessorPool:
    steps = [
        SimulatedProcessor(f"p{i}", latency=SLOW if i == 5 else LATENCY, concurrency=SLOTS)
        for i in range(BALANCED_PROCESSORS)
    ]
    chosen: Any = balancer
    if balancer == "power_of_two":
        from nanobrain.infrastructure.parallel import PowerOfTwoChoices

        chosen = PowerOfTwoChoices(seed=seed)
    return ProcessorPool(steps, balancer=chosen, breaker=None)


async def bench_balancers(p: Params) -> list[dict[str, Any]]:
    n = p.balancer_requests
    p99s: dict[str, list[float]] = {name: [] for name in BALANCER_NAMES}
    slow_share: dict[str, list[float]] = {name: [] for name in BALANCER_NAMES}
    for round_number in range(p.balancer_rounds):
        for name in BALANCER_NAMES:
            pool = slow_one_pool(name, seed=round_number)
            gc.collect()
            latencies, failures = await open_loop(pool, n, BALANCER_ARRIVALS)
            assert failures == 0
            p99s[name].append(percentile(latencies, 99) * 1e3)
            slow_share[name].append(100.0 * pool["p5"].calls / n)
    return [
        figure(
            f"B.{name}",
            f"p99, {BALANCED_PROCESSORS} processors, one {SLOW * 1e3:g} ms, balancer {name}",
            "ms",
            "round-robin",
            p99s[name],
            p99s["round_robin"],
            target=1.0 if name in ("fastest_response", "power_of_two") else None,
            details={"slow_processor_share_percent_median": rounded(statistics.median(slow_share[name]))},
        )
        for name in BALANCER_NAMES
    ]


# -- entry point -----------------------------------------------------------------------------
def details(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The lines under the table: T's rate, F's breakers and failures, B's share of the slow processor."""
    t, f = (next(row["details"] for row in rows if row["key"] == key) for key in ("T", "F"))
    shares = ", ".join(
        f"{row['key'][2:]} {number(row['details']['slow_processor_share_percent_median'])}"
        for row in rows
        if row["key"].startswith("B.")
    )
    return [
        (
            "T",
            f"{number(t['requests_per_second_median'])} requests/s (median), "
            f"ideal {number(t['ideal_requests_per_second'])}",
        ),
        (
            "F",
            f"breaker trips per round {f['breaker_trips_per_round']}, failed attempts per round "
            f"{f['failed_attempts_per_round']}; the baseline without failover lost {f['baseline_failed_requests']} "
            "requests",
        ),
        ("B", f"share of requests sent to the slow processor (%, median): {shares}"),
    ]


def main(argv: list[str] | None = None) -> int:
    args = BenchmarkArguments(__doc__, "parallel", rounds=(5, 2), rounds_of="of T, D and D0").parse(argv)
    params = Params.for_mode(args.quick, args.repeat)
    run = BenchmarkRun("NanoBrain parallel processing benchmarks", args)
    rows = [
        run.phase("T", lambda: asyncio.run(bench_throughput(params))),
        run.phase("D", lambda: asyncio.run(bench_dispatch(params, 0.0))),
        run.phase("D0", lambda: asyncio.run(bench_dispatch(params, None))),
        *run.phase("F", lambda: asyncio.run(bench_failing(params))),
        *run.phase("B", lambda: asyncio.run(bench_balancers(params))),
    ]
    caption = "baselines (same process; D, D0 and B interleaved with the pool's rounds, T and F after them):"
    run.finish(rows, params.__dict__, caption=caption, details=details(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
