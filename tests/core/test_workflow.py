"""Workflows: building (sequence, add/link/chain), fan-out/fan-in, nesting, streaming events, failures,
concurrent runs and the long-lived mode."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from nanobrain import (
    FunctionStep,
    OnUpdate,
    OutputSet,
    RunError,
    RunFailed,
    RunFinished,
    RunStarted,
    Step,
    StepError,
    StepFinished,
    StepStarted,
    StepTimeout,
    Workflow,
    current_context,
    step,
)
from nanobrain.core.events import StepFailed as StepFailedEvent


@step
def tokenize(text: str) -> list[str]:
    return text.split()


@step
def count(tokens: list[str]) -> int:
    return len(tokens)


@step
async def describe(n: int) -> str:
    await asyncio.sleep(0)
    return f"{n} words"


# -- building ----------------------------------------------------------------------------------


async def test_sequence_links_each_step_to_the_next():
    wf = Workflow.sequence(tokenize, count, describe, name="words")
    assert wf.name == "words"
    assert list(wf.steps) == ["tokenize", "count", "describe"]
    assert list(wf.inputs) == ["text"]
    assert list(wf.outputs) == ["result"]
    assert wf.problems() == []
    assert await wf.run(text="one two three") == {"result": "3 words"}


async def test_sequence_accepts_plain_functions():
    def shout(text: str) -> str:
        return text.upper()

    async def exclaim(text: str) -> str:
        return text + "!"

    wf = Workflow.sequence(shout, exclaim)
    assert await wf.run(text="hi") == {"result": "HI!"}
    with pytest.raises(ValueError, match=r"at least one step"):
        Workflow.sequence()


async def test_add_link_and_chain_build_the_same_graph():
    by_hand = Workflow("by_hand", inputs={"text": str}, outputs={"summary": str})
    by_hand.add(tokenize)
    by_hand.add(count)
    by_hand.add(describe)
    by_hand.link("inputs.text", "tokenize.text")
    by_hand.link("tokenize.result", "count.tokens")
    by_hand.link(count, describe)  # steps with one output / one input can be linked directly
    by_hand.link("describe.result", "outputs.summary")

    chained = Workflow("chained", inputs={"text": str}, outputs={"summary": str})
    chained.chain(tokenize, count, describe)
    chained.link("inputs.text", "tokenize.text")
    chained.link(describe, "outputs.summary")

    assert {(k.source, k.target) for k in by_hand.links} == {(k.source, k.target) for k in chained.links}
    assert len(by_hand.links) == len(chained.links) == 4
    for wf in (by_hand, chained):
        assert await wf.run(text="a b") == {"summary": "2 words"}


def test_chain_matches_units_by_name_when_there_are_several():
    @step(outputs=["a", "b"])
    def split(x: int) -> dict:
        return {"a": x, "b": -x}

    @step
    def combine(a: int, b: int) -> int:
        return a + b

    wf = Workflow("w").chain(split, combine)
    assert [(k.source, k.target) for k in wf.links] == [("split.a", "combine.a"), ("split.b", "combine.b")]

    @step
    def unrelated(z: int, w: int) -> int:
        return z

    with pytest.raises(ValueError, match=r"cannot chain 'split'.*'unrelated'"):
        Workflow("w2").chain(split, unrelated)


def test_ambiguous_step_endpoint_asks_for_a_unit_name():
    @step(outputs=["a", "b"])
    def two(x: int) -> dict:
        return {}

    wf = Workflow("w")
    with pytest.raises(ValueError, match=r"'two' has 2 outputs.*two.<unit>"):
        wf.link(two, "outputs.y")


def test_add_refuses_a_second_step_with_the_same_name_but_renames_on_request():
    wf = Workflow("w")
    wf.add(count)
    wf.add(count)  # the same step again is fine
    other = FunctionStep(lambda tokens: 0, "count")
    with pytest.raises(ValueError, match=r"already has a step named 'count'"):
        wf.add(other)
    twin = wf.add(count, name="count_again")
    assert twin.name == "count_again"
    assert list(wf.steps) == ["count", "count_again"]
    assert count.name == "count"


def test_workflow_description_is_not_the_class_docstring():
    assert Workflow("w").description == ""
    assert Workflow("w", description="Summarize text.").description == "Summarize text."


async def test_run_checks_the_inputs_it_is_given():
    wf = Workflow.sequence(tokenize, count)
    with pytest.raises(RunError, match=r"no input 'txt'"):
        await wf.run(txt="typo")
    with pytest.raises(RunError, match=r"needs input 'text'"):
        await wf.run()


# -- fan-out / fan-in --------------------------------------------------------------------------


class Gather(Step):
    """Sums every branch's value."""

    def __init__(self, width: int) -> None:
        super().__init__("gather", inputs={f"b{i}": int for i in range(width)}, outputs={"total": int})

    async def process(self, inputs):
        return {"total": sum(inputs.values())}


async def test_fan_out_to_many_branches_and_join():
    width = 60
    seen: list[int] = []

    wf = Workflow("fan", inputs={"x": int}, outputs={"total": int})
    for i in range(width):

        async def branch(x: int, i: int = i) -> int:
            seen.append(i)
            await asyncio.sleep(0.001 * (i % 3))  # finish out of order
            return x * i

        wf.add(FunctionStep(branch, f"branch{i}"))
        wf.link("inputs.x", f"branch{i}.x")
        wf.link(f"branch{i}.result", f"gather.b{i}")
    wf.add(Gather(width))
    wf.link("gather.total", "outputs.total")
    assert wf.problems() == []

    assert await wf.run(x=2) == {"total": 2 * sum(range(width))}
    assert sorted(seen) == list(range(width))
    # A second run joins its own values, not leftovers of the first.
    assert await wf.run(x=1) == {"total": sum(range(width))}


async def test_fan_in_on_one_port_sees_every_branch_value():
    collected: list[int] = []

    @step(trigger=OnUpdate())
    def collect(value: int) -> None:
        collected.append(value)

    wf = Workflow("w", inputs={"x": int}, steps=[collect])
    for i in range(55):
        wf.add(FunctionStep(lambda x, i=i: x + i, f"add{i}"))
        wf.link("inputs.x", f"add{i}.x")
        wf.link(f"add{i}.result", "collect.value", fan_in="merge")
    await wf.run(x=1000)
    assert sorted(collected) == [1000 + i for i in range(55)]


# -- nesting -----------------------------------------------------------------------------------


def nested_pair() -> tuple[Workflow, Workflow]:
    inner = Workflow.sequence(tokenize, count, name="inner")
    outer = Workflow("outer", inputs={"text": str}, outputs={"summary": str})
    outer.add(inner)
    outer.add(describe)
    outer.link("inputs.text", "inner.text")
    outer.link("inner.result", "describe.n")
    outer.link("describe.result", "outputs.summary")
    return inner, outer


async def test_nested_workflow_runs_as_a_step():
    inner, outer = nested_pair()
    assert isinstance(inner, Step)
    assert outer.problems() == []
    assert await outer.run(text="a b c d") == {"summary": "4 words"}
    assert await inner.run(text="a b") == {"result": 2}, "the inner workflow still runs on its own"


async def test_nested_workflow_events_appear_in_the_outer_stream_with_a_nested_path():
    _, outer = nested_pair()
    events = [event async for event in outer.stream(text="x y")]
    started = [(e.path, e.step) for e in events if isinstance(e, StepStarted)]
    assert started == [
        ("outer", "inner"),
        ("outer/inner", "tokenize"),
        ("outer/inner", "count"),
        ("outer", "describe"),
    ]
    inner_run = [e for e in events if e.path == "outer/inner" and isinstance(e, RunStarted | RunFinished)]
    assert [e.type for e in inner_run] == ["run_started", "run_finished"]
    assert inner_run[0].run_id != events[0].run_id, "the nested run has its own id"
    last = events[-1]
    assert isinstance(last, RunFinished)
    assert (last.path, last.run_id, last.outputs) == ("outer", events[0].run_id, {"summary": "2 words"})


async def test_nested_step_context_path():
    paths: list[str] = []

    @step
    def where(x: int) -> int:
        context = current_context()
        assert context is not None
        paths.append(context.path)
        return x

    inner = Workflow.sequence(where, name="inner")
    outer = Workflow.sequence(inner, name="outer")
    assert await outer.run(x=5) == {"result": 5}
    assert paths == ["outer/inner/where"]


async def test_failure_inside_a_nested_workflow_names_both_steps():
    @step
    def explode(x: int) -> int:
        raise KeyError("missing")

    inner = Workflow.sequence(explode, name="inner")
    outer = Workflow.sequence(inner, name="outer")
    with pytest.raises(StepError) as info:
        await outer.run(x=1)
    assert info.value.step == "inner"
    cause = info.value.__cause__
    assert isinstance(cause, StepError)
    assert cause.step == "explode"
    assert isinstance(cause.__cause__, KeyError)


# -- streaming events --------------------------------------------------------------------------


async def test_stream_yields_events_in_order():
    wf = Workflow.sequence(tokenize, count, name="words")
    events = [event async for event in wf.stream(text="a b c")]
    assert [e.type for e in events] == [
        "run_started",
        "step_started",
        "step_finished",
        "step_started",
        "output_set",
        "step_finished",
        "run_finished",
    ]
    run_id = events[0].run_id
    assert all(e.run_id == run_id and e.path == "words" for e in events)
    assert isinstance(events[0], RunStarted) and events[0].inputs == {"text": "a b c"}
    first, second = (e for e in events if isinstance(e, StepStarted))
    assert (first.step, first.inputs) == ("tokenize", {"text": "a b c"})
    assert (second.step, second.inputs) == ("count", {"tokens": ["a", "b", "c"]})
    finished = [e for e in events if isinstance(e, StepFinished)]
    assert finished[0].outputs == {"result": ["a", "b", "c"]}
    assert all(e.duration >= 0 for e in finished)
    output = next(e for e in events if isinstance(e, OutputSet))
    assert (output.name, output.value) == ("result", 3)
    assert isinstance(events[-1], RunFinished) and events[-1].outputs == {"result": 3}
    assert events[-1].to_dict()["type"] == "run_finished"


async def test_steps_can_stream_tokens_and_custom_events():
    @step
    async def speak(prompt: str) -> str:
        context = current_context()
        assert context is not None and context.streaming
        for word in ("Hello", ", ", "world"):
            context.token(word)
        context.report("usage", tokens=3)
        return "Hello, world"

    wf = Workflow.sequence(speak, name="chat")
    events = [e async for e in wf.stream(prompt="hi")]
    assert "".join(e.text for e in events if e.type == "token") == "Hello, world"
    custom = [e for e in events if e.type == "custom"]
    assert [(e.step, e.name, e.data) for e in custom] == [("speak", "usage", {"tokens": 3})]
    assert events[-1].type == "run_finished"


async def test_leaving_a_stream_early_cancels_the_run():
    cancelled = asyncio.Event()

    @step
    async def slow(x: int) -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return x

    wf = Workflow.sequence(slow, name="w")
    async with contextlib.aclosing(wf.stream(x=1)) as events:
        async for event in events:
            if event.type == "step_started":
                break
    assert cancelled.is_set()


# -- failures ----------------------------------------------------------------------------------


@step
def divide(x: int) -> float:
    return 1 / x


async def test_failing_step_raises_step_failed_with_the_original_cause():
    wf = Workflow.sequence(divide, name="math")
    with pytest.raises(StepError) as info:
        await wf.run(x=0)
    assert info.value.step == "divide"
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert info.value.error is info.value.__cause__
    assert "'divide'" in str(info.value) and "ZeroDivisionError" in str(info.value)


async def test_failing_step_in_a_stream_yields_step_failed_and_run_failed_then_raises():
    wf = Workflow.sequence(divide, name="math")
    events = []
    with pytest.raises(StepError) as info:
        async for event in wf.stream(x=0):
            events.append(event)
    assert [e.type for e in events] == ["run_started", "step_started", "step_failed", "run_failed"]
    failed = events[2]
    assert isinstance(failed, StepFailedEvent)
    assert failed.step == "divide"
    assert isinstance(failed.error, ZeroDivisionError)
    assert isinstance(events[3], RunFailed)
    assert events[3].error is info.value
    assert "ZeroDivisionError" in failed.to_dict()["error"]


async def test_one_failing_branch_cancels_the_others():
    cancelled: list[str] = []
    started = asyncio.Event()

    @step
    async def slow(x: int) -> int:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append("slow")
            raise
        return x

    @step
    async def broken(x: int) -> int:
        await started.wait()
        raise RuntimeError("boom")

    wf = Workflow("w", inputs={"x": int}, outputs={"y": int}, steps=[slow, broken])
    wf.link("inputs.x", "slow.x")
    wf.link("inputs.x", "broken.x")
    wf.link("slow.result", "outputs.y")
    with pytest.raises(StepError, match=r"'broken'.*boom"):
        await asyncio.wait_for(wf.run(x=1), timeout=10)
    assert cancelled == ["slow"]


async def test_timeout_of_a_nested_workflow_cancels_its_steps():
    cancelled: list[str] = []

    @step
    async def stuck(x: int) -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append("stuck")
            raise
        return x

    inner = Workflow.sequence(stuck, name="inner", timeout=0.05)
    outer = Workflow.sequence(inner, name="outer")
    with pytest.raises(StepError) as info:
        await outer.run(x=1)
    assert info.value.step == "inner"
    assert isinstance(info.value.__cause__, StepTimeout)
    assert cancelled == ["stuck"]


# -- concurrent runs ---------------------------------------------------------------------------


async def test_concurrent_runs_of_one_workflow_share_no_state():
    @step
    async def slow_square(x: int) -> int:
        await asyncio.sleep(0.001 * (x % 5))
        return x * x

    @step
    async def label(n: int) -> str:
        await asyncio.sleep(0)
        return f"n={n}"

    wf = Workflow.sequence(slow_square, label, name="squares")
    results = await asyncio.gather(*(wf.run(x=i) for i in range(200)))
    assert results == [{"result": f"n={i * i}"} for i in range(200)]


async def test_concurrent_joins_pair_their_own_values():
    @step
    async def left(x: int) -> int:
        await asyncio.sleep(0.001 * (x % 3))
        return x

    @step
    async def right(x: int) -> int:
        await asyncio.sleep(0.001 * ((x + 1) % 3))
        return -x

    @step
    def pair(a: int, b: int) -> tuple:
        return (a, b)

    wf = Workflow("join", inputs={"x": int}, outputs={"pair": tuple}, steps=[left, right, pair])
    wf.link("inputs.x", "left.x")
    wf.link("inputs.x", "right.x")
    wf.link("left.result", "pair.a")
    wf.link("right.result", "pair.b")
    wf.link("pair.result", "outputs.pair")
    results = await asyncio.gather(*(wf.run(x=i) for i in range(100)))
    assert results == [{"pair": (i, -i)} for i in range(100)]


# -- long-lived mode ---------------------------------------------------------------------------


async def test_long_lived_handle_keeps_triggers_armed():
    totals: list[int] = []

    @step(trigger=OnUpdate())
    def accumulate(x: int) -> int:
        totals.append((totals[-1] if totals else 0) + x)
        return totals[-1]

    wf = Workflow("acc", inputs={"x": int}, outputs={"total": int}, steps=[accumulate])
    wf.link("inputs.x", "accumulate.x")
    wf.link("accumulate.result", "outputs.total")
    async with wf.start() as handle:
        await handle.send(x=1)
        assert await handle.idle() == {"total": 1}
        await handle.send(x=2)
        await handle.send(x=3)
        assert await handle.idle() == {"total": 6}
        assert handle.outputs == {"total": 6}
        with pytest.raises(RunError, match=r"no input 'y'"):
            await handle.send(y=1)
    assert totals == [1, 3, 6]


async def test_long_lived_handle_events_and_stop_cancels_work_in_flight():
    cancelled = asyncio.Event()
    started = asyncio.Event()

    @step(trigger=OnUpdate())
    async def work(x: int) -> int:
        if x == 2:
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return x

    wf = Workflow("w", inputs={"x": int}, outputs={"y": int}, steps=[work])
    wf.link("inputs.x", "work.x")
    wf.link("work.result", "outputs.y")
    handle = wf.start()
    async with handle:
        events = handle.events()
        await handle.send(x=1)
        await handle.idle()
        seen = [await anext(events) for _ in range(3)]
        assert [e.type for e in seen] == ["step_started", "output_set", "step_finished"]
        await handle.send(x=2)
        await asyncio.wait_for(started.wait(), timeout=5)
    assert cancelled.is_set(), "leaving the handle must cancel the step that is still running"
    await events.aclose()


async def test_long_lived_handle_reports_a_failed_step():
    @step(trigger=OnUpdate())
    def check(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return x

    wf = Workflow("w", inputs={"x": int}, steps=[check])
    wf.link("inputs.x", "check.x")
    async with wf.start() as handle:
        await handle.send(x=1)
        await handle.idle()
        await handle.send(x=-1)
        with pytest.raises(StepError, match=r"'check'.*negative"):
            await handle.idle()


async def test_handle_events_end_when_the_handle_stops() -> None:
    workflow = Workflow.sequence(FunctionStep(lambda x: x + 1, name="inc"), name="w")
    async with workflow.start() as handle:
        events = handle.events()
        await handle.send(x=1)
        await handle.idle()
    seen = [e.type async for e in events]  # would hang if stop() did not end the iteration
    assert "output_set" in seen


async def test_aclose_releases_what_steps_hold_in_nested_workflows_too() -> None:
    closed: list[str] = []

    class Holder(Step):
        inputs = {"x": int}
        outputs = {"result": int}

        async def process(self, inputs: dict) -> dict:
            return {"result": inputs["x"]}

        async def aclose(self) -> None:
            closed.append(self.name)

    inner = Workflow.sequence(Holder("deep"), name="inner")
    outer = Workflow.sequence(Holder("top"), inner, name="outer")
    assert [s.name for s in outer.walk()] == ["outer", "top", "inner", "deep"]
    async with outer:
        assert await outer.run(x=3) == {"result": 3}
    assert sorted(closed) == ["deep", "top"]
