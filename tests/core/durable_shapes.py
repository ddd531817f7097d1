"""Workflows for the durable-run crash tests, run in a child process that is killed with SIGKILL.

Every step appends its firing's idempotency key to a side-channel file (NB_SIDE), so the test
can count how often each firing executed across the killed process and the resumed run.

    python -m tests.core.durable_shapes SHAPE DATABASE_URL SCHEMA RUN_ID
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from typing import Any

from nanobrain import Map, Step, Workflow, current_context, step
from nanobrain.agents.agent import Agent
from nanobrain.llm.messages import ChatRequest
from nanobrain.llm.scripted import ScriptedModel, call
from nanobrain.llm.tools import Tool


def mark(suffix: str = "") -> None:
    context = current_context()
    assert context is not None
    with open(os.environ["NB_SIDE"], "a") as side:
        side.write(context.idempotency_key + suffix + "\n")


async def pause() -> None:
    await asyncio.sleep(random.uniform(0.002, 0.008))


@step
async def inc(x: int) -> int:
    mark()
    await pause()
    return x + 1


def chain() -> Workflow:
    steps = [inc.renamed(f"s{i}") for i in range(10)]
    return Workflow.sequence(*steps, name="chain")


class Join(Step):
    inputs = {"a": int, "b": int, "c": int, "d": int}
    outputs = {"total": int}

    async def process(self, inputs: dict[str, Any]) -> dict[str, Any]:
        mark()
        await pause()
        return {"total": sum(inputs.values())}


def fan_join() -> Workflow:
    wf = Workflow("fan", inputs={"x": int}, outputs={"result": int})
    for name in "abcd":
        wf.add(inc.renamed(f"branch_{name}"))
        wf.link("inputs.x", f"branch_{name}.x")
        wf.link(f"branch_{name}.result", f"join.{name}")
    wf.add(Join("join"))
    wf.add(inc.renamed("after"))
    wf.link("join.total", "after.x")
    wf.link("after.result", "outputs.result")
    return wf


@step
async def grow(items: list[str]) -> list[str]:
    mark()
    await pause()
    return [*items, f"{len(items):020d}"]


def loop() -> Workflow:
    wf = Workflow("loop", inputs={"items": list[str]}, outputs={"items": list[str]})
    wf.add(grow)
    wf.link("inputs.items", "grow.items")
    wf.link("grow.result", "grow.items", when=lambda v: len(v) < 15, max_iterations=20)
    wf.link("grow.result", "outputs.items", when=lambda v: len(v) >= 15)
    return wf


def nested() -> Workflow:
    inner = Workflow.sequence(inc.renamed("i1"), inc.renamed("i2"), inc.renamed("i3"), name="inner")
    return Workflow.sequence(inc.renamed("pre"), inner, inc.renamed("post"), name="outer")


def add(a: int, b: int) -> int:
    """Add two numbers."""
    mark("#tool")
    return a + b


def _respond(request: ChatRequest) -> Any:
    mark(f"#model{len(request.messages)}")
    last = request.messages[-1]
    if last.role == "user":
        number = int(last.content.split()[-1])
        return call("add", a=number, b=100)
    return f"the sum is {last.content}"


def agent() -> Workflow:
    model = ScriptedModel(respond=_respond)
    ask = Agent("ask", model=model, tools=[Tool.from_function(add)], prompt="add 100 to {number}")
    return Workflow.sequence(inc.renamed("prepare"), ask, name="agent_shape")


@step
async def total(result: list[int]) -> int:
    mark()
    return sum(result)


def mapped() -> Workflow:
    """A map whose items finish out of order, three at a time; each item marks `run/each[i]/1`."""
    return Workflow.sequence(Map(inc, name="each", max_concurrency=3), total, name="map_shape")


SHAPES = {
    "chain": (chain, {"x": 0}),
    "fan_join": (fan_join, {"x": 1}),
    "loop": (loop, {"items": []}),
    "nested": (nested, {"x": 0}),
    "agent": (agent, {"x": 1}),
    "map": (mapped, {"x": list(range(9))}),
}


def inputs_for(shape: str) -> dict[str, Any]:
    return dict(SHAPES[shape][1])


def build(shape: str) -> Workflow:
    return SHAPES[shape][0]()


def store(url: str, schema: str) -> Any:
    from nanobrain.infrastructure.data.database import Database
    from nanobrain.infrastructure.data.journal import SqlJournalStore

    return SqlJournalStore(Database(url, schema=schema or None))


async def _main(shape: str, url: str, schema: str, run_id: str) -> None:
    journal = store(url, schema)
    print("started", flush=True)
    result = await build(shape).run(inputs_for(shape), durable=journal, run_id=run_id)
    print(result, flush=True)
    await journal.aclose()


if __name__ == "__main__":
    # Through the module's import name, so its functions are named as in the resuming process.
    from tests.core import durable_shapes

    asyncio.run(durable_shapes._main(*sys.argv[1:5]))
