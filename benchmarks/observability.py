"""Observability overhead: the 10-step chain and the fan-out with metrics on, tracing on, and both, beside off.

    .venv/bin/python benchmarks/observability.py          # full run, writes results/observability.json
    .venv/bin/python benchmarks/observability.py --quick  # smoke run, writes results/observability-quick.json

Figures: time per step (a whole run's time divided by the steps it fires, so run-level work is
spread over its steps) with each mode on, beside "off" in the same rounds; the goals bound the
extra time per step (median on minus median off), shown in the details:

chain-metrics / chain-tracing / chain-both    the 10-step chain of engine.py figure A
fan-metrics / fan-tracing / fan-both          the fan-out to 100 branches and a join (figure B)
sink-metrics / sink-tracing / sink-both       the sinks alone: a chain run's events handed straight to them,
                                              per step, beside a no-op sink (the goals apply to these too)
chain-events / fan-events                     a sink that does nothing: what the engine spends building and
                                              sending events once anyone listens (part of every figure above)
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
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from common import BenchmarkArguments, BenchmarkRun, figure, rounded
from engine import CHAIN_STEPS, FAN_BRANCHES, chain, fan_out

import nanobrain as nb

MODES = ("off", "events", "metrics", "tracing", "both")
TARGETS = {"events": None, "metrics": 2.0, "tracing": 25.0, "both": 27.0}
QUIET_CALL_NS = 45.0


@dataclass(frozen=True)
class Params:
    repeat: int
    chain_runs: int
    fan_runs: int

    @classmethod
    def for_mode(cls, quick: bool, repeat: int) -> Params:
        if quick:
            return cls(repeat=repeat, chain_runs=200, fan_runs=10)
        # Many short rounds, every mode in each: a busy machine's load then weighs on all modes alike.
        return cls(repeat=repeat, chain_runs=400, fan_runs=25)


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

    def ignore(event: nb.RunEvent) -> None:
        pass

    return {
        "off": [],
        "events": [ignore],
        "metrics": [metrics],
        "tracing": [tracing],
        "both": [metrics, tracing],
    }


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
    off = statistics.median(per_step["off"])
    for mode in MODES[1:]:
        row = figure(
            f"{key}-{mode}",
            f"{label}, {'a no-op sink' if mode == 'events' else mode} on: per step",
            "us",
            f"{label} with observability off, per step",
            per_step[mode],
            per_step["off"],
            details={
                "runs_per_round": runs,
                "steps_per_run": steps,
                "extra_us_per_step_median": rounded(statistics.median(per_step[mode]) - off),
            },
        )
        goal = TARGETS[mode]
        if goal is not None:
            # The goal bounds the extra time (median on - median off): as a bound on the value, off + goal.
            bound = rounded(off + goal)
            row.update(target=bound, target_op="<=", target_on="value", target_met=row["value_median"] <= bound)
            row["details"]["goal_extra_us_per_step"] = goal
        rows.append(row)
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


def bench_sinks(p: Params) -> list[dict[str, Any]]:
    """The sinks alone: one step's events (started, finished) handed to each sink, per step, beside a no-op sink.

    A run's own events are sent once per 10 steps, as in the chain. This is the part of the extra time
    that is the sinks' own work; the rest is the engine building events once anyone listens.
    """
    sinks = make_sinks()
    run_id, path = "0123456789abcdef", f"chain{CHAIN_STEPS}"
    step_events = [
        (
            nb.StepStarted(run_id, path, step=f"s{i}", firing=1, inputs={"x": 1}),
            nb.StepFinished(run_id, path, step=f"s{i}", firing=1, outputs={"result": 1}, duration=1e-5),
        )
        for i in range(CHAIN_STEPS)
    ]
    started, finished = nb.RunStarted(run_id, path, inputs={"x": 1}), nb.RunFinished(run_id, path, duration=1e-4)
    runs = p.chain_runs

    def one(sink: Callable[[nb.RunEvent], None]) -> float:
        begin = time.perf_counter()
        for _ in range(runs):
            sink(started)
            for start, finish in step_events:
                sink(start)
                sink(finish)
            sink(finished)
        return (time.perf_counter() - begin) / runs / CHAIN_STEPS * 1e6

    def chained(chosen: list[Callable[[nb.RunEvent], None]]) -> Callable[[nb.RunEvent], None]:
        def call(event: nb.RunEvent) -> None:
            for sink in chosen:
                sink(event)

        return call

    calls = {mode: chained(sinks[mode]) for mode in MODES[1:]}
    for sink in calls.values():
        one(sink)  # warm-up
    per_step: dict[str, list[float]] = {mode: [] for mode in calls}
    for _ in range(p.repeat):
        gc.collect()
        for mode, sink in calls.items():
            per_step[mode].append(one(sink))
    rows = []
    for mode in ("metrics", "tracing", "both"):
        extra = [on - idle for on, idle in zip(per_step[mode], per_step["events"], strict=True)]
        rows.append(
            figure(
                f"sink-{mode}",
                f"the {mode} sink{'s' if mode == 'both' else ''} alone, per step",
                "us",
                "a no-op sink given the same events, per step",
                per_step[mode],
                per_step["events"],
                target=TARGETS[mode],
                target_on="value",
                details={"runs_per_round": runs, "extra_over_no_op_us_median": rounded(statistics.median(extra))},
            )
        )
    return rows


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
    parser = BenchmarkArguments(__doc__, "observability", rounds=(15, 3))
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
    sink_rows = run.phase("sinks", lambda: bench_sinks(params))
    calibration = (calibration_before, call_ns())
    # Scaled to a quiet machine by the plain-call time measured around the run (a rough guide only).
    scale = QUIET_CALL_NS / (sum(calibration) / 2)
    for row in sink_rows:
        row["details"]["quiet_estimate_us"] = rounded(row["value_median"] * scale)
    for row in [*chain_rows, *fan_rows]:
        row["details"]["extra_us_per_step_quiet_estimate"] = rounded(row["details"]["extra_us_per_step_median"] * scale)
    run.finish(
        [off, *chain_rows, *fan_rows, *sink_rows],
        {**params.__dict__, "python_call_ns_before_after": calibration},
        caption="baselines (the same workload with observability off, interleaved in every round):",
        details=[
            ("machine", f"a plain Python call took {calibration[0]} / {calibration[1]} ns before / after (quiet: ~45)"),
            *(
                (
                    row["key"],
                    f"extra per step {row['details']['extra_us_per_step_median']} us measured, "
                    f"~{row['details']['extra_us_per_step_quiet_estimate']} us scaled to a quiet machine",
                )
                for row in [*chain_rows, *fan_rows]
            ),
            *(
                (row["key"], f"~{row['details']['quiet_estimate_us']} us scaled to a quiet machine")
                for row in sink_rows
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
