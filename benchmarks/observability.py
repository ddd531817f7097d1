"""Observability overhead: the 10-step chain and the fan-out with metrics on, tracing on, and both, beside off.

    .venv/bin/python benchmarks/observability.py          # full run, writes results/observability.json
    .venv/bin/python benchmarks/observability.py --quick  # smoke run, writes results/observability-quick.json

Figures, each the extra time per step (whole-run time difference divided by the steps a run
fires, so run-level work is spread over its steps), measured against "off" in the same round:

chain-metrics / chain-tracing / chain-both    the 10-step chain of engine.py figure A
fan-metrics / fan-tracing / fan-both          the fan-out to 100 branches and a join (figure B)
chain-off                                     per step, off, after the observability modules are imported
                                              and their sinks built but not installed, against off before:
                                              the ratio is what "off" costs (noise around 1)

Metrics: `RunMetrics` in its own registry. Tracing: `TracingSink` with the SDK's `TracerProvider`,
a `BatchSpanProcessor` and an exporter that drops the spans (the cost measured is building and
queueing spans in the run's thread, not the network). Goals (design.md): metrics <= 2 us per step,
tracing <= 25 us per step, off nothing measurable (here: a ratio within 1.05).
Every round runs all modes back to back; min and median are over rounds.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from common import BenchmarkArguments, BenchmarkRun, figure
from engine import CHAIN_STEPS, FAN_BRANCHES, chain, fan_out

import nanobrain as nb

MODES = ("off", "metrics", "tracing", "both")
TARGETS = {"metrics": 2.0, "tracing": 25.0, "both": 27.0}


@dataclass(frozen=True)
class Params:
    repeat: int
    chain_runs: int
    fan_runs: int

    @classmethod
    def for_mode(cls, quick: bool, repeat: int) -> Params:
        if quick:
            return cls(repeat=repeat, chain_runs=200, fan_runs=10)
        return cls(repeat=repeat, chain_runs=2000, fan_runs=100)


def make_sinks() -> dict[str, list[Callable[[nb.RunEvent], None]]]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from prometheus_client import CollectorRegistry

    from nanobrain.observability.metrics import RunMetrics
    from nanobrain.observability.tracing import TracingSink

    class Dropping(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropping(), max_queue_size=1 << 16))
    metrics, tracing = RunMetrics(CollectorRegistry()), TracingSink(provider)
    return {"off": [], "metrics": [metrics], "tracing": [tracing], "both": [metrics, tracing]}


async def timed_runs(workflow: nb.Workflow, runs: int, sinks: list[Callable[[nb.RunEvent], None]]) -> float:
    removers = [nb.instrument(sink) for sink in sinks]
    try:
        gc.collect()
        started = time.perf_counter()
        for _ in range(runs):
            await workflow.run(x=1)
        return time.perf_counter() - started
    finally:
        for remove in removers:
            remove()


async def bench(
    workflow: nb.Workflow, steps: int, runs: int, repeat: int, key: str, label: str
) -> list[dict[str, Any]]:
    sinks = make_sinks()
    for mode in MODES:  # warm-up: the label children and code paths exist before timing
        await timed_runs(workflow, max(1, runs // 10), sinks[mode])
    per_step: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(repeat):
        for mode in MODES:
            per_step[mode].append(await timed_runs(workflow, runs, sinks[mode]) / runs / steps * 1e6)
    rows = []
    for mode in MODES[1:]:
        extra = [on - off for on, off in zip(per_step[mode], per_step["off"], strict=True)]
        rows.append(
            figure(
                f"{key}-{mode}",
                f"{label}, {mode} on: extra per step",
                "us",
                f"{label} with observability off, per step",
                extra,
                per_step["off"],
                target=TARGETS[mode],
                target_on="value",
                details={"runs_per_round": runs, "steps_per_run": steps},
            )
        )
    return rows


async def bench_off(p: Params) -> dict[str, Any]:
    """Off before and after the observability modules are loaded and their sinks built (not installed)."""
    workflow = chain(CHAIN_STEPS)
    before: list[float] = []
    for _ in range(p.repeat):
        before.append(await timed_runs(workflow, p.chain_runs, []) / p.chain_runs / CHAIN_STEPS * 1e6)
    make_sinks()
    after: list[float] = []
    for _ in range(p.repeat):
        after.append(await timed_runs(workflow, p.chain_runs, []) / p.chain_runs / CHAIN_STEPS * 1e6)
    return figure(
        "chain-off",
        f"{CHAIN_STEPS}-step chain, off, observability loaded: per step",
        "us",
        f"{CHAIN_STEPS}-step chain before loading observability, per step",
        after,
        before,
        target=1.05,
        details={"runs_per_round": p.chain_runs, "note": "nothing is installed when off: the ratio is noise around 1"},
    )


def call_ns() -> float:
    """Nanoseconds per plain Python function call: how busy the machine is (about 40-50 ns when quiet)."""

    def f(x: int) -> int:
        return x

    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(200_000):
            f(1)
        best = min(best, (time.perf_counter() - started) / 200_000 * 1e9)
    return round(best, 1)


def main(argv: list[str] | None = None) -> int:
    parser = BenchmarkArguments(__doc__, "observability", rounds=(7, 3))
    args = parser.parse(argv)
    params = Params.for_mode(args.quick, args.repeat)
    run = BenchmarkRun("NanoBrain observability overhead", args)
    calibration_before = call_ns()
    # "off" first, before any observability module is imported.
    off = run.phase("chain-off", lambda: asyncio.run(bench_off(params)))
    chain_rows = run.phase(
        "chain",
        lambda: asyncio.run(
            bench(
                chain(CHAIN_STEPS), CHAIN_STEPS, params.chain_runs, params.repeat, "chain", f"{CHAIN_STEPS}-step chain"
            )
        ),
    )
    fan = fan_out(FAN_BRANCHES)
    fan_rows = run.phase(
        "fan",
        lambda: asyncio.run(
            bench(fan, len(fan.steps), params.fan_runs, params.repeat, "fan", f"fan-out to {FAN_BRANCHES} and join")
        ),
    )
    calibration = (calibration_before, call_ns())
    run.finish(
        [off, *chain_rows, *fan_rows],
        {**params.__dict__, "python_call_ns_before_after": calibration},
        caption="baselines (the same workload with observability off, interleaved in every round):",
        details=[("machine", f"a plain Python call took {calibration[0]} ns / {calibration[1]} ns (quiet: ~45 ns)")],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
