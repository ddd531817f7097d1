"""Language-model overhead: the local model through a NanoBrain agent vs raw llama-cpp-python.

    .venv/bin/python benchmarks/llm.py            # full run (~1-2 min), writes results/llm.json
    .venv/bin/python benchmarks/llm.py --quick    # smoke run (~15 s), writes results/llm-quick.json
    .venv/bin/python benchmarks/llm.py --output /tmp/llm.json --repeat 9

Figures:

tps     tokens/s of the bundled SmolLM2 model through an Agent in a Workflow, streamed (`workflow.stream`,
        token events), from the call to the last event; baseline: `Llama.create_chat_completion(stream=True)`
        on a second Llama with the same settings, same prompt, sampling and max_tokens. Target: ratio >= 0.95.
ttft    time to the first token on the same runs (first token event / first content chunk).
agent   one `Agent.ask` with the ScriptedModel (the agent loop's own cost: request building, the call,
        usage and events), µs per call; baseline: `ScriptedModel.complete` called directly.

Each round measures NanoBrain and its baseline back to back (alternating which goes first); each round
of `tps`/`ttft` uses a different prompt (the same for both sides), so prompt evaluation is part of the
figure rather than served from llama.cpp's prefix cache. Min and median are over rounds; ratios use medians.
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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nanobrain as nb
from nanobrain.agents.agent import Agent
from nanobrain.llm import ChatRequest, Message, ModelNotConfigured, ScriptedModel
from nanobrain.llm.local import DEFAULT_REPEAT_PENALTY, DEFAULT_TEMPERATURE, LocalProvider

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

TOPICS = (
    "a lighthouse keeper",
    "a lost robot",
    "a dragon who cannot fly",
    "a city under the sea",
    "a clockmaker's apprentice",
    "the last tree on Mars",
    "a cat that learns to read",
    "a winter festival",
    "a message in a bottle",
    "a train that never stops",
    "a library at night",
    "an old map",
)


@dataclass(frozen=True)
class Params:
    repeat: int
    max_tokens: int
    agent_calls: int
    n_threads: int | None = None  # None: the provider's default

    @classmethod
    def for_mode(cls, quick: bool, repeat: int | None, n_threads: int | None = None) -> Params:
        if quick:
            return cls(repeat=repeat or 5, max_tokens=32, agent_calls=300, n_threads=n_threads)
        return cls(repeat=repeat or 9, max_tokens=128, agent_calls=3000, n_threads=n_threads)


@dataclass
class Figure:
    key: str
    name: str
    unit: str
    baseline: str
    values: list[float]
    baselines: list[float]
    higher_is_better: bool
    target: float | None = None  # on the ratio (value median / baseline median)
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        ratio = statistics.median(self.values) / statistics.median(self.baselines)
        met = None
        if self.target is not None:
            met = ratio >= self.target if self.higher_is_better else ratio <= self.target
        return {
            "name": self.name,
            "unit": self.unit,
            "value_min": _round(min(self.values)),
            "value_median": _round(statistics.median(self.values)),
            "baseline_min": _round(min(self.baselines)),
            "baseline_median": _round(statistics.median(self.baselines)),
            "ratio": _round(ratio),
            "higher_is_better": self.higher_is_better,
            "target": self.target,
            "target_op": (">=" if self.higher_is_better else "<=") if self.target is not None else None,
            "target_on": "ratio" if self.target is not None else None,
            "target_met": met,
            "baseline": self.baseline,
            "rounds": {"values": [_round(v) for v in self.values], "baselines": [_round(v) for v in self.baselines]},
            "details": self.details,
        }


def _round(x: float) -> float:
    return float(f"{x:.4g}")


# -- tps and ttft: the local model -----------------------------------------------------------------
@dataclass
class Run:
    seconds: float
    first_token: float
    tokens: int
    text: str


async def nanobrain_run(workflow: nb.Workflow, prompt: str) -> Run:
    started = time.perf_counter()
    first: float | None = None
    pieces: list[str] = []
    finished: nb.RunFinished | None = None
    async for event in workflow.stream(message=prompt):
        if isinstance(event, nb.Token):
            if first is None:
                first = time.perf_counter() - started
            pieces.append(event.text)
        elif isinstance(event, nb.RunFinished):
            finished = event
    seconds = time.perf_counter() - started
    assert finished is not None and first is not None
    return Run(seconds, first, finished.usage.get("completion_tokens", 0), "".join(pieces))


def raw_run(llama: Any, prompt: str, max_tokens: int, seed: int) -> Run:
    started = time.perf_counter()
    first: float | None = None
    pieces: list[str] = []
    for chunk in llama.create_chat_completion(
        messages=[{"role": "user", "content": prompt}],
        temperature=DEFAULT_TEMPERATURE,
        repeat_penalty=DEFAULT_REPEAT_PENALTY,
        max_tokens=max_tokens,
        seed=seed,
        stream=True,
    ):
        piece = chunk["choices"][0]["delta"].get("content")
        if piece:
            if first is None:
                first = time.perf_counter() - started
            pieces.append(piece)
    seconds = time.perf_counter() - started
    assert first is not None
    return Run(seconds, first, len(pieces), "".join(pieces))


async def bench_local(p: Params) -> list[Figure]:
    provider = LocalProvider(n_threads=p.n_threads)
    await provider.load()
    from llama_cpp import Llama

    raw = Llama(
        model_path=str(provider.model_path),
        n_ctx=provider.n_ctx,
        n_threads=provider.n_threads,
        n_threads_batch=provider.n_threads,
        seed=provider.seed,
        verbose=False,
    )
    agent = Agent("assistant", model=provider, memory=False, max_tokens=p.max_tokens)
    workflow = nb.Workflow.sequence(agent, name="chat")

    def prompt(i: int) -> str:
        return f"Write a short story about {TOPICS[i % len(TOPICS)]}."

    # Warm-up: both models loaded, threads started, code paths taken once.
    await nanobrain_run(workflow, "Say hello.")
    raw_run(raw, "Say hello.", p.max_tokens, provider.seed)

    ours: list[Run] = []
    theirs: list[Run] = []
    for i in range(p.repeat):
        text = prompt(i)
        gc.collect()
        if i % 2 == 0:
            ours.append(await nanobrain_run(workflow, text))
            gc.collect()
            theirs.append(raw_run(raw, text, p.max_tokens, provider.seed))
        else:
            theirs.append(raw_run(raw, text, p.max_tokens, provider.seed))
            gc.collect()
            ours.append(await nanobrain_run(workflow, text))
    raw.close()

    same_text = [a.text == b.text for a, b in zip(ours, theirs, strict=True)]
    # With the same output both sides generated the same tokens; count them with the provider's usage.
    for a, b in zip(ours, theirs, strict=True):
        if a.text == b.text:
            b.tokens = a.tokens
    settings = {
        "model": provider.model,
        "n_ctx": provider.n_ctx,
        "n_threads": provider.n_threads,
        "temperature": DEFAULT_TEMPERATURE,
        "repeat_penalty": DEFAULT_REPEAT_PENALTY,
        "max_tokens": p.max_tokens,
    }
    tps = Figure(
        "tps",
        "local model tokens/s, Agent in a Workflow, streamed",
        "tok/s",
        "raw llama-cpp-python create_chat_completion(stream=True), same settings and prompt",
        [r.tokens / r.seconds for r in ours],
        [r.tokens / r.seconds for r in theirs],
        higher_is_better=True,
        target=0.95,
        details={
            **settings,
            "tokens_per_round": [r.tokens for r in ours],
            "same_output_every_round": all(same_text),
            "same_output_rounds": sum(same_text),
        },
    )
    ttft = Figure(
        "ttft",
        "local model time to first token, same runs",
        "ms",
        "raw llama-cpp-python, first content chunk",
        [r.first_token * 1000 for r in ours],
        [r.first_token * 1000 for r in theirs],
        higher_is_better=False,
        details={
            "overhead_ms_median": _round(
                statistics.median(r.first_token * 1000 for r in ours)
                - statistics.median(r.first_token * 1000 for r in theirs)
            )
        },
    )
    return [tps, ttft]


# -- agent: the agent loop's own cost --------------------------------------------------------------
async def bench_agent(p: Params) -> Figure:
    model = ScriptedModel(respond=lambda request: "ok")
    agent = Agent("bench", model=model, memory=False)
    workflow = nb.Workflow.sequence(agent, name="bench")
    request = ChatRequest((Message.user("hi"),))

    async def agent_calls(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await agent.ask(message="hi")
        return (time.perf_counter() - started) / n * 1e6

    async def direct_calls(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await model.complete(request)
        return (time.perf_counter() - started) / n * 1e6

    async def workflow_runs(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await workflow.run(message="hi")
        return (time.perf_counter() - started) / n * 1e6

    n = p.agent_calls
    await agent_calls(n // 10 or 1)
    await direct_calls(n // 10 or 1)
    await workflow_runs(n // 10 or 1)
    values, baselines, in_workflow = [], [], []
    for _ in range(p.repeat):
        model.requests.clear()
        gc.collect()
        values.append(await agent_calls(n))
        gc.collect()
        baselines.append(await direct_calls(n))
        gc.collect()
        in_workflow.append(await workflow_runs(n))
    return Figure(
        "agent",
        "Agent.ask with the ScriptedModel, per call",
        "us",
        "ScriptedModel.complete called directly",
        values,
        baselines,
        higher_is_better=False,
        details={
            "calls_per_round": n,
            "overhead_us_median": _round(statistics.median(values) - statistics.median(baselines)),
            "workflow_run_us_median": _round(statistics.median(in_workflow)),
            "workflow_run_us_min": _round(min(in_workflow)),
        },
    )


# -- reporting ---------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
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
    try:
        import llama_cpp

        info["llama_cpp_python"] = llama_cpp.__version__
    except ImportError:
        pass
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
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
        target = f"ratio {s['target_op']} {s['target']:g}" if s["target"] is not None else "-"
        met = "-" if s["target_met"] is None else ("yes" if s["target_met"] else "NO")
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
    lines.append("baselines (same process, interleaved with the NanoBrain rounds):")
    lines.extend(f"  {key:<6} {s['baseline']}" for key, s in summaries.items())
    details = []
    if "tps" in summaries:
        d = summaries["tps"]["details"]
        details.append(
            f"  tps    {d['model']}, n_threads={d['n_threads']}, max_tokens={d['max_tokens']}, "
            f"same output on both sides in {d['same_output_rounds']}/{len(d['tokens_per_round'])} rounds"
        )
        details.append(f"  ttft   overhead {summaries['ttft']['details']['overhead_ms_median']} ms (median)")
    if "agent" in summaries:
        d = summaries["agent"]["details"]
        details.append(
            f"  agent  overhead {d['overhead_us_median']} us per call (median); the agent as a one-step "
            f"workflow: {d['workflow_run_us_median']} us per run"
        )
    if details:
        lines += ["", "details:", *details]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short generations and few calls, for a smoke run")
    parser.add_argument("--output", type=Path, help="JSON path (default: benchmarks/results/llm[-quick].json)")
    parser.add_argument("--repeat", type=int, help="measurement rounds per figure (default: 9, quick: 5)")
    parser.add_argument("--threads", type=int, help="llama.cpp threads for both sides (default: the provider's)")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 5:
        parser.error("--repeat must be at least 5 (min and median need a few rounds)")

    params = Params.for_mode(args.quick, args.repeat, args.threads)
    output = args.output or HERE / "results" / ("llm-quick.json" if args.quick else "llm.json")
    started = time.perf_counter()
    info = machine_info()
    print(
        f"NanoBrain LLM benchmarks ({'quick' if args.quick else 'full'}, {params.repeat} rounds) - "
        f"Python {info['python']}, {info['cpu_count']} CPUs, load average {info.get('load_average')}",
        flush=True,
    )
    figures: list[Figure] = []
    try:
        phase = time.perf_counter()
        figures += asyncio.run(bench_local(params))
        print(f"  tps, ttft done in {time.perf_counter() - phase:.1f} s", flush=True)
    except ModelNotConfigured as exc:
        print(f"  tps, ttft skipped: {exc}", flush=True)
    phase = time.perf_counter()
    figures.append(asyncio.run(bench_agent(params)))
    print(f"  agent done in {time.perf_counter() - phase:.1f} s", flush=True)

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
    print(f"\nwrote {output} ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
