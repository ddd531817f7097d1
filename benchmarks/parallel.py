"""Parallel processing benchmarks: processor pools, balancers, breakers, failover. Real clock, real sleeps.

    .venv/bin/python benchmarks/parallel.py            # full run (~1.5 min), writes results/parallel.json
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

A repetition is one whole round; min and median are over rounds, ratios use medians.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nanobrain as nb
from nanobrain.infrastructure.parallel import (
    BreakerPolicy,
    FailoverRetry,
    FaultyStep,
    ParallelEvent,
    ProcessorPool,
    SimulatedProcessor,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
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


@dataclass
class Figure:
    key: str
    name: str
    unit: str
    baseline: str
    values: list[float]
    baselines: list[float]
    target: float | None = None
    target_op: str = ">="  # ">=" or "<="
    target_on: str = "value"  # "value" or "ratio"
    higher_is_better: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        # `min` is the least disturbed round: the lowest time, or the highest rate.
        best = max if self.higher_is_better else min
        value_median, baseline_median = statistics.median(self.values), statistics.median(self.baselines)
        ratio = value_median / baseline_median if baseline_median else float("nan")
        met = None
        if self.target is not None:
            checked = ratio if self.target_on == "ratio" else value_median
            met = checked >= self.target if self.target_op == ">=" else checked <= self.target
        return {
            "name": self.name,
            "unit": self.unit,
            "value_min": _round(best(self.values)),
            "value_median": _round(value_median),
            "baseline_min": _round(best(self.baselines)),
            "baseline_median": _round(baseline_median),
            "ratio": _round(ratio),
            "target": self.target,
            "target_op": self.target_op,
            "target_on": self.target_on,
            "target_met": met,
            "baseline": self.baseline,
            "rounds": {"values": [_round(v) for v in self.values], "baselines": [_round(v) for v in self.baselines]},
            "details": self.details,
        }


def _round(x: float) -> float:
    return float(f"{x:.4g}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def timed(make: Callable[[], Awaitable[Any]]) -> float:
    gc.collect()
    started = time.perf_counter()
    await make()
    return time.perf_counter() - started


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
async def bench_throughput(p: Params) -> Figure:
    n = p.throughput_requests
    ideal = n * LATENCY / PROCESSORS
    await pool_requests(work_pool(LATENCY), PROCESSORS * 4)  # warm-up
    values = [ideal / await timed(lambda: pool_requests(work_pool(LATENCY), n)) for _ in range(p.repeat)]
    baselines = [
        ideal / await timed(lambda: semaphore_requests(n, LATENCY)) for _ in range(p.throughput_baseline_rounds)
    ]
    return Figure(
        key="T",
        name=f"throughput, {PROCESSORS} processors of {LATENCY * 1e3:g} ms, {n:,} requests",
        unit="of ideal",
        baseline=f"asyncio.Semaphore({PROCESSORS}) + gather of the same sleeps",
        values=values,
        baselines=baselines,
        target=0.9,
        target_op=">=",
        target_on="value",
        higher_is_better=True,
        details={
            "ideal_seconds": _round(ideal),
            "requests_per_second_median": _round(statistics.median(values) * PROCESSORS / LATENCY),
            "ideal_requests_per_second": _round(PROCESSORS / LATENCY),
        },
    )


# -- D, D0: dispatch overhead ------------------------------------------------------------------
async def bench_dispatch(p: Params, latency: float | None) -> Figure:
    n = p.dispatch_requests
    pool = work_pool(latency)
    await pool_requests(pool, n)  # warm-up
    await semaphore_requests(n, latency)
    values, baselines = [], []
    for _ in range(p.repeat):
        values.append(await timed(lambda: pool_requests(pool, n)) / n * 1e6)
        baselines.append(await timed(lambda: semaphore_requests(n, latency)) / n * 1e6)
    yielding = latency is not None
    return Figure(
        key="D" if yielding else "D0",
        name=f"dispatch, {n:,} requests, work {'yields once' if yielding else 'returns at once'}",
        unit="us/request",
        baseline=f"asyncio.Semaphore({PROCESSORS}) + gather of the same work",
        values=values,
        baselines=baselines,
        details={
            "overhead_us_per_request_median": _round(statistics.median(values) - statistics.median(baselines)),
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
        failover=FailoverRetry(attempts=4, initial=0.01, max_wait=0.1, jitter=0.01),
        on_event=lambda e: trips.append(e) if e.name == "breaker_opened" else None,
    )


async def bench_failing(p: Params) -> list[Figure]:
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
    details = {
        "failing_processors": FAILING,
        "requests_per_round": n,
        "arrivals_per_second": ARRIVALS_PER_SECOND,
        "deadline_s": DEADLINE,
        "breaker_trips_per_round": trips_per_round,
        "failed_attempts_per_round": failed_attempts,
        "p50_ms_per_round": [_round(x) for x in p50],
        "p99_ms_per_round": [_round(x) for x in p99],
        "baseline_failed_requests": naive_failures,
    }
    return [
        Figure(
            key="F",
            name=f"success within {DEADLINE:g} s deadline, {scenario}",
            unit="%",
            baseline="the same pool without failover or breakers (each request tried once)",
            values=success,
            baselines=[100.0 * len(naive_latencies) / n],
            target=100.0,
            target_op=">=",
            target_on="value",
            higher_is_better=True,
            details=details,
        ),
        Figure(
            key="F.p50",
            name="median latency, same scenario",
            unit="ms",
            baseline="the same load with no failing processor",
            values=p50,
            baselines=healthy_p50,
        ),
        Figure(
            key="F.p99",
            name="p99 latency, same scenario",
            unit="ms",
            baseline="the same load with no failing processor",
            values=p99,
            baselines=healthy_p99,
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


async def bench_balancers(p: Params) -> list[Figure]:
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
    baseline = p99s["round_robin"]
    figures = []
    for name in BALANCER_NAMES:
        figures.append(
            Figure(
                key=f"B.{name}",
                name=f"p99, {BALANCED_PROCESSORS} processors, one {SLOW * 1e3:g} ms, balancer {name}",
                unit="ms",
                baseline="round-robin",
                values=p99s[name],
                baselines=baseline,
                target=1.0 if name in ("fastest_response", "power_of_two") else None,
                target_op="<=",
                target_on="ratio",
                details={"slow_processor_share_percent_median": _round(statistics.median(slow_share[name]))},
            )
        )
    return figures


# -- reporting -------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
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


def _fmt(x: float) -> str:
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3f}" if abs(x) < 1 else f"{x:.2f}"


def render(summaries: dict[str, dict[str, Any]]) -> str:
    header = ("", "figure", "unit", "min", "median", "base min", "base med", "ratio", "target", "met")
    rows = [header]
    for key, s in summaries.items():
        target = "" if s["target"] is None else f"{s['target_on']} {s['target_op']} {s['target']:g}"
        met = "" if s["target_met"] is None else ("yes" if s["target_met"] else "NO")
        rows.append(
            (
                key,
                s["name"],
                s["unit"],
                _fmt(s["value_min"]),
                _fmt(s["value_median"]),
                _fmt(s["baseline_min"]),
                _fmt(s["baseline_median"]),
                f"{s['ratio']:.2f}",
                target,
                met,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    right = {3, 4, 5, 6, 7}
    lines = []
    for n, row in enumerate(rows):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("-" * len(lines[0]))
    lines.append("")
    lines.append("baselines:")
    lines.extend(f"  {key:<20} {s['baseline']}" for key, s in summaries.items())
    f = summaries["F"]["details"]
    lines.append("")
    lines.append(
        f"details: F breaker trips per round {f['breaker_trips_per_round']}, failed attempts per round "
        f"{f['failed_attempts_per_round']}; baseline without failover lost {f['baseline_failed_requests']} requests"
    )
    shares = {k[2:]: s["details"]["slow_processor_share_percent_median"] for k, s in summaries.items() if k[:2] == "B."}
    lines.append(
        "         B share of requests sent to the slow processor (%): "
        + ", ".join(f"{name} {share:g}" for name, share in shares.items())
    )
    return "\n".join(lines)


async def run_all(p: Params) -> dict[str, Figure]:
    figures: list[Figure] = [await bench_throughput(p)]
    figures.append(await bench_dispatch(p, 0.0))
    figures.append(await bench_dispatch(p, None))
    figures.extend(await bench_failing(p))
    figures.extend(await bench_balancers(p))
    return {f.key: f for f in figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--output", type=Path, help="JSON path (default: benchmarks/results/parallel[-quick].json)")
    parser.add_argument("--repeat", type=int, help="rounds of T, D and D0 (default: 5, quick: 2)")
    args = parser.parse_args(argv)
    params = Params.for_mode(args.quick, args.repeat)
    started = time.perf_counter()
    figures = asyncio.run(run_all(params))
    summaries = {key: figure.summary() for key, figure in figures.items()}
    print(render(summaries))
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    report = {
        "machine": machine_info(),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nanobrain": {"version": nb.__version__, "commit": git_commit()},
        "mode": "quick" if args.quick else "full",
        "params": params.__dict__,
        "benchmarks": summaries,
    }
    output = args.output or HERE / "results" / ("parallel-quick.json" if args.quick else "parallel.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output.relative_to(REPO) if output.is_relative_to(REPO) else output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
