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

import asyncio
import gc
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from common import BenchmarkArguments, BenchmarkRun, figure, machine_info, rounded, timed

import nanobrain as nb
from nanobrain.agents.agent import Agent
from nanobrain.llm import ChatRequest, Message, ModelNotConfigured, ScriptedModel
from nanobrain.llm.local import DEFAULT_REPEAT_PENALTY, DEFAULT_TEMPERATURE, LocalProvider

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


async def bench_local(p: Params) -> list[dict[str, Any]]:
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
    tps = figure(
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
    ttft = figure(
        "ttft",
        "local model time to first token, same runs",
        "ms",
        "raw llama-cpp-python, first content chunk",
        [r.first_token * 1000 for r in ours],
        [r.first_token * 1000 for r in theirs],
        details={
            "overhead_ms_median": rounded(
                statistics.median(r.first_token * 1000 for r in ours)
                - statistics.median(r.first_token * 1000 for r in theirs)
            )
        },
    )
    return [tps, ttft]


# -- agent: the agent loop's own cost --------------------------------------------------------------
async def bench_agent(p: Params) -> dict[str, Any]:
    model = ScriptedModel(respond=lambda request: "ok")
    agent = Agent("bench", model=model, memory=False)
    workflow = nb.Workflow.sequence(agent, name="bench")
    request = ChatRequest((Message.user("hi"),))

    async def agent_calls(n: int) -> None:
        for _ in range(n):
            await agent.ask(message="hi")

    async def direct_calls(n: int) -> None:
        for _ in range(n):
            await model.complete(request)

    async def workflow_runs(n: int) -> None:
        for _ in range(n):
            await workflow.run(message="hi")

    n = p.agent_calls
    await agent_calls(n // 10 or 1)
    await direct_calls(n // 10 or 1)
    await workflow_runs(n // 10 or 1)
    values, baselines, in_workflow = [], [], []
    for _ in range(p.repeat):
        model.requests.clear()
        values.append(await timed(agent_calls(n)) / n * 1e6)
        baselines.append(await timed(direct_calls(n)) / n * 1e6)
        in_workflow.append(await timed(workflow_runs(n)) / n * 1e6)
    return figure(
        "agent",
        "Agent.ask with the ScriptedModel, per call",
        "us",
        "ScriptedModel.complete called directly",
        values,
        baselines,
        details={
            "calls_per_round": n,
            "overhead_us_median": rounded(statistics.median(values) - statistics.median(baselines)),
            "workflow_run_us_median": rounded(statistics.median(in_workflow)),
            "workflow_run_us_min": rounded(min(in_workflow)),
        },
    )


# -- reporting ---------------------------------------------------------------------------------------
def details(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The lines under the table: model settings, first-token overhead, the agent's overhead."""
    found = {row["key"]: row["details"] for row in rows}
    lines = []
    if "tps" in found:
        tps = found["tps"]
        lines.append(
            (
                "tps",
                f"{tps['model']}, n_threads={tps['n_threads']}, max_tokens={tps['max_tokens']}, same output on "
                f"both sides in {tps['same_output_rounds']}/{len(tps['tokens_per_round'])} rounds",
            )
        )
        lines.append(("ttft", f"overhead {found['ttft']['overhead_ms_median']} ms (median)"))
    agent = found["agent"]
    lines.append(
        (
            "agent",
            f"overhead {agent['overhead_us_median']} us per call (median); the agent as a one-step workflow: "
            f"{agent['workflow_run_us_median']} us per run",
        )
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = BenchmarkArguments(__doc__, "llm", rounds=(9, 5), min_repeat=5)
    parser.add_argument("--threads", type=int, help="llama.cpp threads for both sides (default: the provider's)")
    args = parser.parse(argv)
    params = Params.for_mode(args.quick, args.repeat, args.threads)
    run = BenchmarkRun("NanoBrain LLM benchmarks", args, machine_info("llama_cpp_python"))
    rows: list[dict[str, Any]] = []
    try:
        rows += run.phase("tps, ttft", lambda: asyncio.run(bench_local(params)))
    except ModelNotConfigured as exc:
        print(f"  tps, ttft skipped: {exc}", flush=True)
    rows.append(run.phase("agent", lambda: asyncio.run(bench_agent(params))))
    run.finish(rows, params.__dict__, details=details(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
