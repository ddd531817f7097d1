"""Engine overhead benchmarks, each measured beside a plain-asyncio baseline in the same process.

    .venv/bin/python benchmarks/engine.py            # full run (~20 s), writes results/engine.json
    .venv/bin/python benchmarks/engine.py --quick    # smoke run (a few seconds), writes results/engine-quick.json
    .venv/bin/python benchmarks/engine.py --output /tmp/engine.json

Figures (see benchmarks/README.md for how to read them):

A       per-step overhead of a linear chain: (t10 - t1) / 9 per run, fitted from 1- and 10-step chains
        run sequentially; baseline: one asyncio.Queue hand-off with a task switch.
B       fan-out to 100 branches and a join step with 100 inputs, per run; baseline: asyncio.gather of
        100 trivial coroutines.
Cy      1000 concurrent runs of a 10-step chain whose steps `await asyncio.sleep(0)`, runs/s; baseline:
        1000 concurrent 10-stage asyncio.Queue pipelines. Peak RSS growth is measured in fresh processes.
import  `import nanobrain` in a fresh interpreter minus a bare interpreter (`python -c pass`).

Every round measures the engine and its baseline back to back, so slow drift of the machine affects both.
A repetition is one whole round; min and median are over rounds, and ratios use medians.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nanobrain as nb

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

CHAIN_STEPS = 10
FAN_BRANCHES = 100


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


@dataclass
class Figure:
    key: str
    name: str
    unit: str
    baseline: str
    values: list[float]
    baselines: list[float]
    target: float
    target_op: str  # "<=" or ">="
    target_on: str  # "ratio" (engine / baseline) or "value" (the engine figure itself)
    details: dict[str, Any] = field(default_factory=dict)
    # For figures whose value is a difference (import time), min and median are taken of each part.
    value_min: float | None = None
    value_median: float | None = None

    def summary(self) -> dict[str, Any]:
        value_min = self.value_min if self.value_min is not None else min(self.values)
        value_median = self.value_median if self.value_median is not None else statistics.median(self.values)
        baseline_min, baseline_median = min(self.baselines), statistics.median(self.baselines)
        if self.target_on == "value":
            ratio = statistics.median(self.values) / baseline_median
            checked = value_median
        else:
            ratio = value_median / baseline_median
            checked = ratio
        met = checked <= self.target if self.target_op == "<=" else checked >= self.target
        return {
            "name": self.name,
            "unit": self.unit,
            "value_min": _round(value_min),
            "value_median": _round(value_median),
            "baseline_min": _round(baseline_min),
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


async def timed(make: Callable[[], Awaitable[Any]]) -> float:
    gc.collect()
    started = time.perf_counter()
    await make()
    return time.perf_counter() - started


async def sequential(workflow: nb.Workflow, runs: int) -> None:
    for _ in range(runs):
        await workflow.run(x=1)


# -- benchmarks ------------------------------------------------------------------------------
async def bench_chain(p: Params) -> Figure:
    one, ten = chain(1), chain(CHAIN_STEPS)
    assert await ten.run(x=7) == {"result": 7}
    runs, handoffs = p.chain_runs, p.chain_runs * CHAIN_STEPS
    await sequential(one, runs)  # warm-up
    await sequential(ten, runs)
    await queue_handoffs(handoffs)
    per_step, per_handoff, t1s, t10s = [], [], [], []
    for _ in range(p.repeat):
        t1 = await timed(lambda: sequential(one, runs))
        t10 = await timed(lambda: sequential(ten, runs))
        gc.collect()
        handoff = await queue_handoffs(handoffs)
        per_step.append((t10 - t1) / (CHAIN_STEPS - 1) / runs * 1e6)
        per_handoff.append(handoff / handoffs * 1e6)
        t1s.append(t1 / runs * 1e6)
        t10s.append(t10 / runs * 1e6)
    return Figure(
        key="A",
        name=f"{CHAIN_STEPS}-step chain, marginal overhead per step",
        unit="us",
        baseline="one asyncio.Queue hand-off (put, task switch, get)",
        values=per_step,
        baselines=per_handoff,
        target=3.5,
        target_op="<=",
        target_on="ratio",
        details={
            "runs_per_round": runs,
            "us_per_run_chain1_median": _round(statistics.median(t1s)),
            "us_per_run_chain10_median": _round(statistics.median(t10s)),
        },
    )


async def bench_fan_out(p: Params) -> Figure:
    workflow = fan_out(FAN_BRANCHES)
    assert (await workflow.run(x=3))["y"] == [3] * FAN_BRANCHES

    async def gathers() -> None:
        for _ in range(p.fan_runs):
            await asyncio.gather(*[trivial() for _ in range(FAN_BRANCHES)])

    await sequential(workflow, max(1, p.fan_runs // 2))  # warm-up
    await gathers()
    engine, baseline = [], []
    for _ in range(p.repeat):
        engine.append(await timed(lambda: sequential(workflow, p.fan_runs)) / p.fan_runs * 1e3)
        baseline.append(await timed(gathers) / p.fan_runs * 1e3)
    return Figure(
        key="B",
        name=f"fan-out to {FAN_BRANCHES} branches and join, per run",
        unit="ms",
        baseline=f"asyncio.gather of {FAN_BRANCHES} trivial coroutines",
        values=engine,
        baselines=baseline,
        target=5.0,
        target_op="<=",
        target_on="ratio",
        details={"runs_per_round": p.fan_runs},
    )


async def concurrent_runs(workflow: nb.Workflow, n: int) -> None:
    results = await asyncio.gather(*[workflow.run(x=i) for i in range(n)])
    assert results[-1] == {"result": n - 1}


async def concurrent_pipelines(n: int) -> None:
    results = await asyncio.gather(*[queue_pipeline(i) for i in range(n)])
    assert results[-1] == n - 1


async def bench_concurrent(p: Params) -> Figure:
    workflow = chain(CHAIN_STEPS, yielding=True)
    n = p.concurrency
    await concurrent_runs(workflow, n)  # warm-up
    await concurrent_pipelines(n)
    engine, baseline = [], []
    for _ in range(p.repeat):
        engine.append(n / await timed(lambda: concurrent_runs(workflow, n)))
        baseline.append(n / await timed(lambda: concurrent_pipelines(n)))
    rss = {side: rss_probe(side, n) for side in ("engine", "baseline")}
    return Figure(
        key="Cy",
        name=f"{n} concurrent runs of a {CHAIN_STEPS}-step yielding chain",
        unit="runs/s",
        baseline=f"{n} concurrent plain asyncio pipelines of {CHAIN_STEPS} queue-linked stage tasks",
        values=engine,
        baselines=baseline,
        target=0.8,
        target_op=">=",
        target_on="ratio",
        details={
            "concurrent_runs": n,
            "peak_rss_growth_kib": rss["engine"]["rss_growth_kib"],
            "baseline_peak_rss_growth_kib": rss["baseline"]["rss_growth_kib"],
            "peak_rss_growth_kib_per_run": _round(rss["engine"]["rss_growth_kib"] / n),
            "baseline_peak_rss_growth_kib_per_run": _round(rss["baseline"]["rss_growth_kib"] / n),
            "rss_note": (
                "peak RSS delta over one round, each side in a fresh process "
                + (
                    "(peak reset first, read as VmHWM)"
                    if rss["engine"]["peak_reset"]
                    else "(ru_maxrss; peak not reset first, so growth may be understated)"
                )
            ),
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


def bench_import(p: Params) -> Figure:
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
    return Figure(
        key="import",
        name="import nanobrain (above a bare interpreter)",
        unit="ms",
        baseline="bare interpreter start: python -c pass",
        values=[x - y for x, y in zip(loaded, bare, strict=True)],
        baselines=bare,
        value_min=min(loaded) - min(bare),
        value_median=statistics.median(loaded) - statistics.median(bare),
        target=150.0,
        target_op="<=",
        target_on="value",
        details={
            "process_ms_median": _round(statistics.median(loaded)),
            "without_bytecode_cache_ms_median": _round(statistics.median(uncached) - statistics.median(bare)),
            "modules_imported": int(modules),
            "ratio_note": "ratio is (bare + import) / bare; the target applies to the value",
        },
    )


# -- reporting -------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
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
    return f"{x:.2f}"


def render(summaries: dict[str, dict[str, Any]]) -> str:
    header = ("", "figure", "unit", "min", "median", "base min", "base med", "ratio", "target", "met")
    rows = [header]
    for key, s in summaries.items():
        on = "ratio" if s["target_on"] == "ratio" else "value"
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
                f"{on} {s['target_op']} {s['target']:g}",
                "yes" if s["target_met"] else "NO",
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
    lines.append("baselines (plain asyncio, same process, interleaved with the engine rounds):")
    lines.extend(f"  {key:<6} {s['baseline']}" for key, s in summaries.items())
    return "\n".join(lines)


def render_details(summaries: dict[str, dict[str, Any]]) -> str:
    a, cy, imp = summaries["A"]["details"], summaries["Cy"]["details"], summaries["import"]["details"]
    return "\n".join(
        [
            "details:",
            f"  A      whole run (median): 1-step chain {a['us_per_run_chain1_median']} us, "
            f"{CHAIN_STEPS}-step chain {a['us_per_run_chain10_median']} us",
            f"  Cy     peak RSS growth: engine {cy['peak_rss_growth_kib']:,} KiB "
            f"({cy['peak_rss_growth_kib_per_run']} KiB/run), baseline {cy['baseline_peak_rss_growth_kib']:,} KiB "
            f"({cy['baseline_peak_rss_growth_kib_per_run']} KiB/run); {cy['rss_note']}",
            f"  import process {imp['process_ms_median']} ms median; without bytecode cache "
            f"+{imp['without_bytecode_cache_ms_median']} ms; {imp['modules_imported']} modules loaded",
        ]
    )


# -- entry point -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run (a few seconds)")
    parser.add_argument("--output", type=Path, help="JSON path (default: benchmarks/results/engine[-quick].json)")
    parser.add_argument("--repeat", type=int, help="measurement rounds per figure (default: 9, quick: 5)")
    parser.add_argument("--rss-probe", choices=["engine", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=1000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.rss_probe:
        print(json.dumps(asyncio.run(_rss_round(args.rss_probe, args.concurrency))))
        return 0
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")

    params = Params.for_mode(args.quick, args.repeat)
    output = args.output or HERE / "results" / ("engine-quick.json" if args.quick else "engine.json")
    started = time.perf_counter()
    info = machine_info()
    print(
        f"NanoBrain engine benchmarks ({'quick' if args.quick else 'full'}, {params.repeat} rounds) - "
        f"Python {info['python']}, {info['cpu_count']} CPUs, {info['platform']}",
        flush=True,
    )
    figures: list[Figure] = []
    for label, run in (
        ("A", lambda: asyncio.run(bench_chain(params))),
        ("B", lambda: asyncio.run(bench_fan_out(params))),
        ("Cy", lambda: asyncio.run(bench_concurrent(params))),
        ("import", lambda: bench_import(params)),
    ):
        phase = time.perf_counter()
        figures.append(run())
        print(f"  {label} done in {time.perf_counter() - phase:.1f} s", flush=True)

    summaries = {f.key: f.summary() for f in figures}
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
    print()
    print(render_details(summaries))
    print(f"\nwrote {output} ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
