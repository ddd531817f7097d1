"""Event seams: several sinks per run, process-wide instruments, a raising sink never fails the
run, firing numbers pair step events, nested runs name their parent, callers choose run ids."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest

import nanobrain as nb
from nanobrain import (
    RunError,
    RunEvent,
    RunFinished,
    RunStarted,
    StepError,
    StepFailed,
    StepFinished,
    StepStarted,
    Token,
    Workflow,
    current_context,
    step,
)


@step
def double(x: int) -> int:
    return x * 2


@step
def inc(x: int) -> int:
    return x + 1


def chain() -> Workflow:
    return Workflow.sequence(double, inc, name="chain")


async def test_a_run_sends_every_event_to_each_of_its_sinks():
    first: list[RunEvent] = []
    second: list[RunEvent] = []
    assert await chain().run(x=3, sinks=[first.append, second.append]) == {"result": 7}
    assert [e.type for e in first] == [e.type for e in second]
    assert [e.type for e in first] == [
        "run_started",
        "step_started",
        "step_finished",
        "step_started",
        "output_set",
        "step_finished",
        "run_finished",
    ]


async def test_a_raising_sink_is_logged_once_and_disabled_and_the_run_succeeds(caplog):
    calls = 0

    def broken(event: RunEvent) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("sink bug")

    kept: list[RunEvent] = []
    with caplog.at_level(logging.ERROR, logger="nanobrain.events"):
        result = await chain().run(x=1, sinks=[broken, kept.append])
    assert result == {"result": 3}
    assert calls == 1  # disabled after its first failure
    assert isinstance(kept[-1], RunFinished)  # the other sink saw the whole run
    reports = [r for r in caplog.records if "sink bug" in (r.exc_text or "") or "raised" in r.getMessage()]
    assert len(reports) == 1
    assert "run_started" in reports[0].getMessage()


async def test_a_raising_sink_in_stream_does_not_end_the_stream():
    def broken(event: RunEvent) -> None:
        raise RuntimeError("no")

    events = [e async for e in chain().stream(x=2, sinks=[broken])]
    assert isinstance(events[-1], RunFinished)
    assert events[-1].outputs == {"result": 5}


async def test_a_raising_on_event_callback_no_longer_fails_the_workflow():
    def broken(event: RunEvent) -> None:
        raise KeyError("oops")

    assert await chain().invoke({"x": 1}, on_event=broken) == {"result": 3}


async def test_instruments_see_every_run_started_after_they_are_added_and_stop_when_removed():
    seen: list[RunEvent] = []
    remove = nb.instrument(seen.append)
    try:
        await chain().run(x=1)
        await chain().run(x=2)
    finally:
        remove()
    await chain().run(x=3)
    starts = [e for e in seen if isinstance(e, RunStarted)]
    assert [e.inputs for e in starts] == [{"x": 1}, {"x": 2}]


async def test_a_raising_instrument_is_disabled_for_that_run_only():
    calls: Counter[str] = Counter()

    def flaky(event: RunEvent) -> None:
        calls[event.run_id] += 1
        raise RuntimeError("instrument bug")

    remove = nb.instrument(flaky)
    try:
        await chain().run(x=1, run_id="first")
        await chain().run(x=1, run_id="second")
    finally:
        remove()
    assert calls == {"first": 1, "second": 1}


async def test_callers_choose_run_ids_for_run_stream_start_and_new_run():
    seen: list[RunEvent] = []
    await chain().run(x=1, run_id="r-run", sinks=[seen.append])
    assert {e.run_id for e in seen} == {"r-run"}

    events = [e async for e in chain().stream({"x": 1}, run_id="r-stream")]
    assert {e.run_id for e in events} == {"r-stream"}

    async with chain().start(run_id="r-start") as handle:
        assert handle.run_id == "r-start"
        await handle.send(x=1)
        assert await handle.idle() == {"result": 3}

    assert chain().new_run(run_id="r-new").run_id == "r-new"


async def test_an_input_named_like_a_keyword_must_be_passed_as_a_mapping():
    @step
    def echo(run_id: str) -> str:
        return run_id

    wf = Workflow.sequence(echo, name="echo")
    assert await wf.run({"run_id": "as-input"}) == {"result": "as-input"}
    with pytest.raises(RunError, match="pass inputs as a mapping"):
        await wf.run(run_id="ambiguous")
    with pytest.raises(RunError, match="given twice"):
        await chain().run({"x": 1}, x=2)


async def test_firing_numbers_pair_starts_with_finishes_under_concurrency():
    release = asyncio.Event()

    class Slow(nb.Step):
        inputs = {"x": int}
        outputs = {"y": int}

        async def process(self, inputs):
            context = current_context()
            assert context is not None
            context.token(f"t{inputs['x']}")
            if inputs["x"] == 0:
                await release.wait()  # the first firing finishes last
            else:
                release.set()
            return {"y": inputs["x"]}

    wf = Workflow("conc", inputs={"x": int}, outputs={"y": int})
    wf.add(Slow("slow", trigger=nb.OnUpdate(), concurrency=4))
    wf.link("inputs.x", "slow.x")
    wf.link("slow.y", "outputs.y")
    events: list[RunEvent] = []
    async with wf.start(on_event=events.append) as handle:
        for x in range(3):
            await handle.send(x=x)
        await handle.idle()
    started = {e.firing: e.inputs["x"] for e in events if isinstance(e, StepStarted)}
    finished = {e.firing: e.outputs["y"] for e in events if isinstance(e, StepFinished)}
    tokens = {e.firing: e.text for e in events if isinstance(e, Token)}
    assert started == finished == {1: 0, 2: 1, 3: 2}
    assert tokens == {1: "t0", 2: "t1", 3: "t2"}
    order = [e.firing for e in events if isinstance(e, StepFinished)]
    assert order[-1] == 1  # finished out of order, still paired by firing


async def test_failure_events_carry_the_firing_and_the_exception_is_step_error():
    @step
    def boom(x: int) -> int:
        raise ValueError("bad")

    events: list[RunEvent] = []
    with pytest.raises(StepError, match="'boom' failed"):
        await Workflow.sequence(boom).run(x=1, sinks=[events.append])
    failed = [e for e in events if isinstance(e, StepFailed)]
    assert len(failed) == 1 and failed[0].firing == 1 and failed[0].step == "boom"
    assert nb.StepFailed is StepFailed and StepFailed is not StepError


async def test_nested_runs_carry_their_parent_run_id_and_a_derived_id():
    inner = Workflow.sequence(double, name="inner")
    outer = Workflow.sequence(inner, inc, name="outer")
    events: list[RunEvent] = []
    assert await outer.run(x=2, run_id="top", sinks=[events.append]) == {"result": 5}
    starts = [e for e in events if isinstance(e, RunStarted)]
    assert [(e.run_id, e.parent_run_id) for e in starts] == [("top", None), ("top.inner.1", "top")]


async def test_steps_get_an_idempotency_key_of_run_step_and_firing():
    keys: list[str] = []

    @step
    def record(x: int) -> int:
        context = current_context()
        assert context is not None
        keys.append(context.idempotency_key)
        return x

    wf = Workflow("keys", inputs={"x": int}, outputs={"y": int})
    wf.add(record, name="record")
    wf.link("inputs.x", "record.x")
    wf.link("record.result", "outputs.y")
    async with wf.start(run_id="k") as handle:
        await handle.send(x=1)
        await handle.idle()
        await handle.send(x=2)
        await handle.idle()
    assert keys == ["k/record/1", "k/record/2"]
