"""Engine overhead benchmarks, each measured beside a plain-asyncio baseline in the same process.

    .venv/bin/python benchmarks/engine.py            # full run (~20 s), writes results/engine.json
    .venv/bin/python benchmarks/engine.py --quick    # smoke run (a few seconds), writes results/engine-quick.json
    .venv/bin/python benchmarks/engine.py --output /tmp/engine.json

Figures (see benchmarks/README.md for how to read them):

A       per-step overhead of a linear chain: (t10 - t1) / 9 per run, fitted from 1- and 10-step chains
        run sequentially; baseline: one asyncio.Queue hand-off with a task switch.
B       fan-out to 100 branches and a join step with 100 inputs, per run; baseline: asyncio.gather of
        100 trivial coroutines.
M       a map of one async function step over 100 items, summed by a second step, per run; baseline:
        asyncio.gather of the same function over the 100 items, then sum.
S       the 10-step chain through `stream()` (every event read), per run; baseline: the same chain
        through `run()`, in the same rounds.
Cy      1000 concurrent runs of a 10-step chain whose steps `await asyncio.sleep(0)`, runs/s; baseline:
        1000 concurrent 10-stage asyncio.Queue pipelines.
Cm      peak RSS growth of one round of Cy, each side in fresh processes (3 rounds); baseline: the
        pipelines'. The goal (15 MiB per 1,000 runs) bounds the value.
import  `import nanobrain` in a fresh interpreter minus a bare interpreter (`python -c pass`).

Every round measures the engine and its baseline back to back, so slow drift of the machine affects both.
A repetition is one whole round; min and median are over rounds, and ratios use medians.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import BenchmarkArguments, BenchmarkRun, figure, rounded, timed

import nanobrain as nb

CHAIN_STEPS = 10
FAN_BRANCHES = 100
MAP_ITEMS = 100
RSS_TARGET_KIB = 15 * 1024


@dataclass(frozen=True)
class Params:
    repeat: int
    chain_runs: int  # A: sequential runs per chain and round
    fan_runs: int  # B: sequential runs per round
    concurrency: int  # Cy: concurrent runs per round
    import_repeat: int

    @classmethod
    def for_mode(cls, quick: bool, repeat: int | None) -> Params:
        if quick:
            return cls(repeat=repeat or 5, chain_runs=100, fan_runs=10, concurrency=100, import_repeat=5)
        return cls(repeat=repeat or 9, chain_runs=1000, fan_runs=100, concurrency=1000, import_repeat=9)


# -- workloads -------------------------------------------------------------------------------
def chain(length: int, *, yielding: bool = False) -> nb.Workflow:
    """A linear workflow of `length` async steps passing `x` along."""
    steps = []
    for i in range(length):
        if yielding:

            async def forward(x: Any) -> Any:
                await asyncio.sleep(0)
                return x

        else:

            async def forward(x: Any) -> Any:
                return x

        steps.append(nb.FunctionStep(forward, name=f"s{i}"))
    return nb.Workflow.sequence(*steps, name=f"chain{length}")


class Join(nb.Step):
    """A join: one input per branch (the default all-data-received trigger fires once all arrived)."""

    def __init__(self, branches: int) -> None:
        super().__init__("join", inputs=[f"v{i}" for i in range(branches)], outputs=["result"])

    async def process(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"result": list(inputs.values())}


def fan_out(branches: int) -> nb.Workflow:
    workflow = nb.Workflow("fan_out", inputs={"x": None}, outputs={"y": None})
    workflow.add(Join(branches))
    for i in range(branches):

        async def branch(x: Any) -> Any:
            return x

        workflow.add(nb.FunctionStep(branch, name=f"b{i}"))
        workflow.link("inputs.x", f"b{i}.x")
        workflow.link(f"b{i}.result", f"join.v{i}")
    workflow.link("join.result", "outputs.y")
    return workflow


async def double(x: int) -> int:
    return 2 * x


def add_up(result: list[int]) -> int:
    return sum(result)


def mapped() -> nb.Workflow:
    """One function step mapped over a list, then summed: the dynamic fan-out shape."""
    return nb.Workflow.sequence(nb.Map(double), add_up, name="map")


async def queue_handoffs(items: int) -> float:
    """Seconds for `items` hand-offs: the producer puts and yields, a consumer task gets."""
    queue: asyncio.Queue[int | None] = asyncio.Queue()

    async def consume() -> None:
        while await queue.get() is not None:
            pass

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)  # let the consumer block in get()
    started = time.perf_counter()
    for i in range(items):
        await queue.put(i)
        await asyncio.sleep(0)  # the task switch: the consumer takes the item now
    elapsed = time.perf_counter() - started
    await queue.put(None)
    await consumer
    return elapsed


async def trivial() -> int:
    return 1


async def queue_pipeline(value: int, stages: int = CHAIN_STEPS) -> int:
    """One run of a plain asyncio pipeline: `stages` tasks joined by queues."""
    queues: list[asyncio.Queue[int]] = [asyncio.Queue() for _ in range(stages + 1)]

    async def stage(source: asyncio.Queue[int], sink: asyncio.Queue[int]) -> None:
        item = await source.get()
        await asyncio.sleep(0)
        await sink.put(item)

    tasks = [asyncio.create_task(stage(queues[i], queues[i + 1])) for i in range(stages)]
    await queues[0].put(value)
    result = await queues[-1].get()
    del tasks  # each stage finished with its put
    return result


async def sequential(workflow: nb.Workflow, runs: int) -> None:
    for _ in range(runs):
        await workflow.run(x=1)


# -- benchmarks ------------------------------------------------------------------------------
async def bench_chain(p: Params) -> dict[str, Any]:
    one, ten = chain(1), chain(CHAIN_STEPS)
    assert await ten.run(x=7) == {"result": 7}
    runs, handoffs = p.chain_runs, p.chain_runs * CHAIN_STEPS
    await sequential(one, runs)  # warm-up
    await sequential(ten, runs)
    await queue_handoffs(handoffs)
    per_step, per_handoff, t1s, t10s = [], [], [], []
    for _ in range(p.repeat):
        t1 = await timed(sequential(one, runs))
        t10 = await timed(sequential(ten, runs))
        gc.collect()
        handoff = await queue_handoffs(handoffs)
        per_step.append((t10 - t1) / (CHAIN_STEPS - 1) / runs * 1e6)
        per_handoff.append(handoff / handoffs * 1e6)
        t1s.append(t1 / runs * 1e6)
        t10s.append(t10 / runs * 1e6)
    return figure(
        "A",
        f"{CHAIN_STEPS}-step chain, marginal overhead per step",
        "us",
        "one asyncio.Queue hand-off (put, task switch, get)",
        per_step,
        per_handoff,
        target=1.0,
        details={
            "runs_per_round": runs,
            "us_per_run_chain1_median": rounded(statistics.median(t1s)),
            "us_per_run_chain10_median": rounded(statistics.median(t10s)),
        },
    )


async def bench_fan_out(p: Params) -> dict[str, Any]:
    workflow = fan_out(FAN_BRANCHES)
    assert (await workflow.run(x=3))["y"] == [3] * FAN_BRANCHES

    async def gathers() -> None:
        for _ in range(p.fan_runs):
            await asyncio.gather(*[trivial() for _ in range(FAN_BRANCHES)])

    await sequential(workflow, max(1, p.fan_runs // 2))  # warm-up
    await gathers()
    engine, baseline = [], []
    for _ in range(p.repeat):
        engine.append(await timed(sequential(workflow, p.fan_runs)) / p.fan_runs * 1e3)
        baseline.append(await timed(gathers()) / p.fan_runs * 1e3)
    return figure(
        "B",
        f"fan-out to {FAN_BRANCHES} branches and join, per run",
        "ms",
        f"asyncio.gather of {FAN_BRANCHES} trivial coroutines",
        engine,
        baseline,
        target=2.0,
        details={"runs_per_round": p.fan_runs},
    )


async def bench_map(p: Params) -> dict[str, Any]:
    workflow = mapped()
    items = list(range(MAP_ITEMS))
    expected = sum(2 * i for i in items)
    assert await workflow.run(x=items) == {"result": expected}

    async def maps() -> None:
        for _ in range(p.fan_runs):
            await workflow.run(x=items)

    async def gathers() -> None:
        for _ in range(p.fan_runs):
            assert sum(await asyncio.gather(*[double(i) for i in items])) == expected

    await maps()  # warm-up
    await gathers()
    engine, baseline = [], []
    for _ in range(p.repeat):
        engine.append(await timed(maps()) / p.fan_runs * 1e3)
        baseline.append(await timed(gathers()) / p.fan_runs * 1e3)
    return figure(
        "M",
        f"map of one function step over {MAP_ITEMS} items, summed, per run",
        "ms",
        f"asyncio.gather of the function over {MAP_ITEMS} items, summed",
        engine,
        baseline,
        target=2.0,
        details={"runs_per_round": p.fan_runs},
    )


async def bench_stream(p: Params) -> dict[str, Any]:
    workflow = chain(CHAIN_STEPS)
    runs = p.chain_runs
    events = [event.type async for event in workflow.stream(x=1)]
    assert events[-1] == "run_finished"

    async def streams() -> None:
        for _ in range(runs):
            async for _event in workflow.stream(x=1):
                pass

    await streams()  # warm-up
    await sequential(workflow, runs)
    engine, baseline = [], []
    for _ in range(p.repeat):
        engine.append(await timed(streams()) / runs * 1e6)
        baseline.append(await timed(sequential(workflow, runs)) / runs * 1e6)
    return figure(
        "S",
        f"{CHAIN_STEPS}-step chain through stream(), every event read, per run",
        "us",
        "the same chain through run()",
        engine,
        baseline,
        target=1.3,
        details={"runs_per_round": runs, "events_per_run": len(events)},
    )


async def concurrent_runs(workflow: nb.Workflow, n: int) -> None:
    results = await asyncio.gather(*[workflow.run(x=i) for i in range(n)])
    assert results[-1] == {"result": n - 1}


async def concurrent_pipelines(n: int) -> None:
    results = await asyncio.gather(*[queue_pipeline(i) for i in range(n)])
    assert results[-1] == n - 1


async def bench_concurrent(p: Params) -> dict[str, Any]:
    workflow = chain(CHAIN_STEPS, yielding=True)
    n = p.concurrency
    await concurrent_runs(workflow, n)  # warm-up
    await concurrent_pipelines(n)
    engine, baseline = [], []
    for _ in range(p.repeat):
        engine.append(n / await timed(concurrent_runs(workflow, n)))
        baseline.append(n / await timed(concurrent_pipelines(n)))
    return figure(
        "Cy",
        f"{n} concurrent runs of a {CHAIN_STEPS}-step yielding chain",
        "runs/s",
        f"{n} concurrent plain asyncio pipelines of {CHAIN_STEPS} queue-linked stage tasks",
        engine,
        baseline,
        higher_is_better=True,
        target=1.2,
        details={"concurrent_runs": n},
    )


def bench_memory(p: Params) -> dict[str, Any]:
    """Peak RSS growth of one round of Cy, engine and baseline each in fresh processes, 3 rounds.

    The goal is for 1,000 runs; a quick run's smaller round is checked against it scaled down.
    """
    n = p.concurrency
    engine, baseline, reset = [], [], True
    for _ in range(3):
        probe = rss_probe("engine", n)
        engine.append(max(probe["rss_growth_kib"], 1))
        baseline.append(max(rss_probe("baseline", n)["rss_growth_kib"], 1))
        reset = reset and probe["peak_reset"]
    return figure(
        "Cm",
        f"peak RSS growth of {n} concurrent yielding {CHAIN_STEPS}-step runs",
        "KiB",
        f"{n} concurrent plain asyncio pipelines of {CHAIN_STEPS} stages",
        engine,
        baseline,
        target=RSS_TARGET_KIB * n / 1000,
        target_on="value",
        details={
            "concurrent_runs": n,
            "kib_per_run_median": rounded(statistics.median(engine) / n),
            "baseline_kib_per_run_median": rounded(statistics.median(baseline) / n),
            "rss_note": "peak RSS delta over one round, each side in a fresh process "
            + (
                "(peak reset first, read as VmHWM)"
                if reset
                else "(ru_maxrss; peak not reset first, so growth may be understated)"
            ),
            "target_note": "15 MiB per 1,000 concurrent runs",
        },
    )


def _reset_peak_rss() -> bool:
    """Lower the recorded peak to the current RSS (Linux >= 4.0), so that growth is not hidden by an earlier peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_kib(reset: bool) -> int:
    """ru_maxrss, or after a reset its per-address-space part (VmHWM).

    On Linux, ru_maxrss is also at least the parent's RSS when this process was forked, and the
    reset does not lower that part; VmHWM is the same peak without it.
    """
    if reset:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss  # bytes on macOS, KiB on Linux


async def _rss_round(side: str, n: int) -> dict[str, Any]:
    workflow = chain(CHAIN_STEPS, yielding=True)
    # Warm the code paths with a small round so one-time costs are not counted as growth.
    await (concurrent_runs(workflow, 2) if side == "engine" else concurrent_pipelines(2))
    gc.collect()
    reset = _reset_peak_rss()
    before = _peak_rss_kib(reset)
    await (concurrent_runs(workflow, n) if side == "engine" else concurrent_pipelines(n))
    return {"rss_growth_kib": _peak_rss_kib(reset) - before, "peak_reset": reset}


def rss_probe(side: str, n: int) -> dict[str, Any]:
    """Peak RSS growth (KiB) of one concurrent round, each side in a fresh process (no reuse of freed memory)."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--rss-probe", side, "--concurrency", str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _time_process(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=tempfile.gettempdir())
    return (time.perf_counter() - started) * 1e3


def bench_import(p: Params) -> dict[str, Any]:
    """Import time with warm bytecode caches, as an installed package has them.

    This environment may set PYTHONDONTWRITEBYTECODE; the measurement then uses a private pycache
    prefix in a temporary directory (so nothing is written into the source tree). The time without
    any cache for nanobrain's own modules is reported as a detail.
    """
    with tempfile.TemporaryDirectory(prefix="nanobrain-pycache-") as cache:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
        env["PYTHONPYCACHEPREFIX"] = cache
        for _ in range(2):  # warm-up: fills the cache, warms the OS file cache
            _time_process("pass", env)
            _time_process("import nanobrain", env)
        bare, loaded = [], []
        for _ in range(p.import_repeat):
            bare.append(_time_process("pass", env))
            loaded.append(_time_process("import nanobrain", env))
    uncached_env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    uncached_env.pop("PYTHONPYCACHEPREFIX", None)
    uncached = [_time_process("import nanobrain", uncached_env) for _ in range(3)]
    modules = subprocess.run(
        [sys.executable, "-c", "import sys; b = set(sys.modules); import nanobrain; print(len(set(sys.modules) - b))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    ).stdout.strip()
    return figure(
        "import",
        "import nanobrain (above a bare interpreter)",
        "ms",
        "bare interpreter start: python -c pass",
        [x - y for x, y in zip(loaded, bare, strict=True)],
        bare,
        value_min=min(loaded) - min(bare),
        value_median=statistics.median(loaded) - statistics.median(bare),
        target=150.0,
        target_on="value",
        details={
            "process_ms_median": rounded(statistics.median(loaded)),
            "without_bytecode_cache_ms_median": rounded(statistics.median(uncached) - statistics.median(bare)),
            "modules_imported": int(modules),
            "ratio_note": "ratio is import / bare interpreter start; the target applies to the value",
        },
    )


def details(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The lines under the table: whole-run times of A, peak RSS growth per run of Cm, import facts."""
    a, cm, imp = (next(row["details"] for row in rows if row["key"] == key) for key in ("A", "Cm", "import"))
    return [
        (
            "A",
            f"whole run (median): 1-step chain {a['us_per_run_chain1_median']} us, "
            f"{CHAIN_STEPS}-step chain {a['us_per_run_chain10_median']} us",
        ),
        (
            "Cm",
            f"per run (median): engine {cm['kib_per_run_median']} KiB, baseline {cm['baseline_kib_per_run_median']} "
            f"KiB; {cm['rss_note']}",
        ),
        (
            "import",
            f"process {imp['process_ms_median']} ms median; without bytecode cache "
            f"+{imp['without_bytecode_cache_ms_median']} ms; {imp['modules_imported']} modules loaded",
        ),
    ]


# -- entry point -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = BenchmarkArguments(__doc__, "engine", rounds=(9, 5))
    parser.add_argument("--rss-probe", choices=["engine", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=1000, help=argparse.SUPPRESS)
    args = parser.parse(argv)
    if args.rss_probe:
        print(json.dumps(asyncio.run(_rss_round(args.rss_probe, args.concurrency))))
        return 0

    params = Params.for_mode(args.quick, args.repeat)
    run = BenchmarkRun("NanoBrain engine benchmarks", args)
    rows = [
        run.phase("A", lambda: asyncio.run(bench_chain(params))),
        run.phase("B", lambda: asyncio.run(bench_fan_out(params))),
        run.phase("M", lambda: asyncio.run(bench_map(params))),
        run.phase("S", lambda: asyncio.run(bench_stream(params))),
        run.phase("Cy", lambda: asyncio.run(bench_concurrent(params))),
    ]
    rows.append(run.phase("Cm", lambda: bench_memory(params)))
    rows.append(run.phase("import", lambda: bench_import(params)))
    run.finish(
        rows,
        params.__dict__,
        caption="baselines (plain asyncio, same process, interleaved with the engine rounds):",
        details=details(rows),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
