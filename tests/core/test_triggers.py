"""Triggers: on_update, all_data_received (join), condition, manual, interval (on a virtual clock)."""

from __future__ import annotations

import asyncio

import pytest

from nanobrain import (
    AllDataReceived,
    Condition,
    Interval,
    Manual,
    OnUpdate,
    RunError,
    VirtualClock,
    Workflow,
    step,
)
from nanobrain.core.triggers import TRIGGER_KINDS


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def pair_workflow(trigger, calls: list[dict]) -> Workflow:
    """inputs a, b -> step `pair(a, b)` with `trigger` -> outputs.result."""

    @step(trigger=trigger)
    def pair(a: int, b: int) -> tuple:
        calls.append({"a": a, "b": b})
        return (a, b)

    wf = Workflow("pairs", inputs={"a": int, "b": int}, outputs={"result": tuple}, steps=[pair])
    wf.link("inputs.a", "pair.a")
    wf.link("inputs.b", "pair.b")
    wf.link("pair.result", "outputs.result")
    return wf


# -- on_update ---------------------------------------------------------------------------------


async def test_on_update_fires_once_per_update_after_required_inputs_have_values():
    calls: list[dict] = []
    wf = pair_workflow(OnUpdate(), calls)
    async with wf.start() as handle:
        await handle.send(a=1)
        await handle.idle()
        assert calls == [], "b has no value yet: the step must not fire"
        await handle.send(b=10)
        await handle.send(a=2)
        await handle.send(a=3)  # no idle in between: nothing may be merged or dropped
        await handle.send(b=20)
        outputs = await handle.idle()
    assert calls == [
        {"a": 1, "b": 10},
        {"a": 2, "b": 10},
        {"a": 3, "b": 10},
        {"a": 3, "b": 20},
    ]
    assert outputs == {"result": (3, 20)}


async def test_on_update_with_one_input_sees_every_value():
    seen: list[int] = []

    @step(trigger=OnUpdate())
    def record(x: int) -> None:
        seen.append(x)

    wf = Workflow("w", inputs={"x": int}, steps=[record])
    wf.link("inputs.x", "record.x")
    async with wf.start() as handle:
        for i in range(20):
            await handle.send(x=i)
        await handle.idle()
    assert seen == list(range(20))


async def test_on_update_optional_input_uses_its_default_until_set():
    calls: list[tuple[int, int]] = []

    @step(trigger=OnUpdate())
    def scale(x: int, factor: int = 2) -> int:
        calls.append((x, factor))
        return x * factor

    wf = Workflow("w", inputs={"x": int, "factor": int}, outputs={"y": int}, steps=[scale])
    wf.link("inputs.x", "scale.x")
    wf.link("inputs.factor", "scale.factor")
    wf.link("scale.result", "outputs.y")
    async with wf.start() as handle:
        await handle.send(x=3)
        await handle.send(factor=5)
        outputs = await handle.idle()
    assert calls == [(3, 2), (3, 5)]
    assert outputs == {"y": 15}


# -- all_data_received -------------------------------------------------------------------------


async def test_all_data_received_is_the_default_trigger():
    @step
    def s(x: int) -> int:
        return x

    assert isinstance(s.trigger, AllDataReceived)
    assert TRIGGER_KINDS["all_data_received"] is AllDataReceived


async def test_join_fires_when_every_input_is_fresh_then_rearms():
    calls: list[dict] = []
    wf = pair_workflow(AllDataReceived(), calls)
    async with wf.start() as handle:
        await handle.send(a=1)
        await handle.idle()
        assert calls == []
        await handle.send(b=10)
        await handle.idle()
        assert calls == [{"a": 1, "b": 10}]
        # Re-armed: a fresh `b` alone is not enough, the old `a` does not count again.
        await handle.send(b=20)
        await handle.idle()
        assert calls == [{"a": 1, "b": 10}]
        await handle.send(a=2)
        outputs = await handle.idle()
    assert calls == [{"a": 1, "b": 10}, {"a": 2, "b": 20}]
    assert outputs == {"result": (2, 20)}


async def test_join_queues_an_input_that_runs_ahead_instead_of_overwriting_it():
    calls: list[dict] = []
    wf = pair_workflow(AllDataReceived(), calls)
    async with wf.start() as handle:
        for a in (1, 2, 3):
            await handle.send(a=a)
        await handle.send(b=10)
        await handle.send(b=20)
        await handle.idle()
        assert calls == [{"a": 1, "b": 10}, {"a": 2, "b": 20}]
        await handle.send(b=30)
        await handle.send(b=40)  # now b runs ahead
        await handle.idle()
        assert calls[-1] == {"a": 3, "b": 30}
        await handle.send(a=4)
        await handle.idle()
    assert calls == [{"a": 1, "b": 10}, {"a": 2, "b": 20}, {"a": 3, "b": 30}, {"a": 4, "b": 40}]


async def test_join_in_a_request_response_run_waits_for_both_branches():
    @step
    async def slow(x: int) -> int:
        await asyncio.sleep(0.01)
        return x + 1

    @step
    def fast(x: int) -> int:
        return x * 10

    @step
    def join(left: int, right: int) -> tuple:
        return (left, right)

    wf = Workflow("diamond", inputs={"x": int}, outputs={"pair": tuple}, steps=[join])
    wf.link("inputs.x", slow)
    wf.link("inputs.x", fast)
    wf.link("slow.result", "join.left")
    wf.link("fast.result", "join.right")
    wf.link("join.result", "outputs.pair")
    assert await wf.run(x=4) == {"pair": (5, 40)}


# -- condition ---------------------------------------------------------------------------------


async def test_condition_fires_only_when_the_predicate_holds():
    seen: list[int] = []

    @step(trigger=Condition(lambda inputs: inputs["x"] % 2 == 0))
    def evens(x: int) -> int:
        seen.append(x)
        return x

    wf = Workflow("w", inputs={"x": int}, outputs={"last_even": int}, steps=[evens])
    wf.link("inputs.x", "evens.x")
    wf.link("evens.result", "outputs.last_even")
    async with wf.start() as handle:
        for i in range(7):
            await handle.send(x=i)
        outputs = await handle.idle()
    assert seen == [0, 2, 4, 6]
    assert outputs == {"last_even": 6}


async def test_condition_predicate_sees_all_inputs():
    calls: list[dict] = []
    wf = pair_workflow(Condition(lambda s: s["a"] + s["b"] > 10), calls)
    async with wf.start() as handle:
        await handle.send(a=1)
        await handle.send(b=2)
        await handle.send(b=20)
        await handle.send(a=-15)
        await handle.idle()
    assert calls == [{"a": 1, "b": 20}]


def test_condition_needs_a_callable():
    with pytest.raises(TypeError, match=r"callable"):
        Condition("x > 1")  # type: ignore[arg-type]

    def is_big(s: dict) -> bool:
        return True

    assert Condition(is_big).describe() == "condition(is_big)"


# -- manual ------------------------------------------------------------------------------------


async def test_manual_trigger_fires_only_when_asked():
    calls: list[int] = []

    @step(trigger=Manual())
    def snapshot(x: int) -> int:
        calls.append(x)
        return x

    wf = Workflow("w", inputs={"x": int}, outputs={"y": int}, steps=[snapshot])
    wf.link("inputs.x", "snapshot.x")
    wf.link("snapshot.result", "outputs.y")
    async with wf.start() as handle:
        with pytest.raises(RunError, match=r"'snapshot' cannot fire.*x"):
            handle.fire("snapshot")
        await handle.send(x=1)
        await handle.send(x=2)
        await handle.idle()
        assert calls == []
        handle.fire("snapshot")
        outputs = await handle.idle()
        assert calls == [2]
        assert outputs == {"y": 2}
        handle.fire("snapshot")
        await handle.idle()
        assert calls == [2, 2]
        with pytest.raises(RunError, match=r"no step named 'nope'"):
            handle.fire("nope")


async def test_manual_step_without_inputs_fires_on_demand_only():
    fired: list[str] = []

    @step(trigger=Manual())
    def ping() -> str:
        fired.append("ping")
        return "pong"

    wf = Workflow("w", outputs={"reply": str}, steps=[ping])
    wf.link("ping.result", "outputs.reply")
    assert wf.problems() == []
    async with wf.start() as handle:
        await handle.idle()
        assert fired == []
        handle.fire("ping")
        handle.fire("ping")
        assert await handle.idle() == {"reply": "pong"}
    assert fired == ["ping", "ping"]


# -- interval ----------------------------------------------------------------------------------


def ticker(clock: VirtualClock, trigger: Interval, times: list[float]) -> Workflow:
    @step(trigger=trigger)
    def tick() -> int:
        times.append(clock.now())
        return len(times)

    wf = Workflow("ticker", outputs={"ticks": int}, steps=[tick], clock=clock)
    wf.link("tick.result", "outputs.ticks")
    return wf


async def test_interval_with_count_in_a_run_follows_the_virtual_clock():
    clock = VirtualClock()
    times: list[float] = []
    wf = ticker(clock, Interval(1.0, count=3), times)
    run = asyncio.create_task(wf.run())
    await settle()
    assert times == []
    assert not run.done()

    await clock.advance(1.0)
    assert times == [1.0]
    await clock.advance(0.5)
    assert times == [1.0]
    await clock.advance(0.5)
    assert times == [1.0, 2.0]
    assert not run.done()

    await clock.advance(10.0)
    assert times == [1.0, 2.0, 3.0], "count bounds the firings"
    assert await asyncio.wait_for(run, timeout=5) == {"ticks": 3}
    assert clock.sleepers == 0


async def test_interval_immediately_fires_at_start():
    clock = VirtualClock()
    times: list[float] = []
    wf = ticker(clock, Interval(2.0, count=2, immediately=True), times)
    run = asyncio.create_task(wf.run())
    await settle()
    assert times == [0.0]
    await clock.advance(2.0)
    assert await asyncio.wait_for(run, timeout=5) == {"ticks": 2}
    assert times == [0.0, 2.0]


async def test_interval_reads_the_latest_inputs_in_a_long_lived_run():
    clock = VirtualClock()
    seen: list[tuple[float, str]] = []

    @step(trigger=Interval(5.0))
    def report(status: str) -> None:
        seen.append((clock.now(), status))

    wf = Workflow("w", inputs={"status": str}, steps=[report], clock=clock)
    wf.link("inputs.status", "report.status")
    async with wf.start() as handle:
        await clock.advance(5.0)
        assert seen == [], "no value yet: the tick is skipped, not queued"
        await handle.send(status="starting")
        await handle.send(status="ok")
        await clock.advance(5.0)
        await handle.send(status="busy")
        await clock.advance(5.0)
        await handle.idle()
        assert seen == [(10.0, "ok"), (15.0, "busy")]
    # Stopping the handle disarms the timer.
    assert clock.sleepers == 0
    await clock.advance(50.0)
    assert seen == [(10.0, "ok"), (15.0, "busy")]


async def test_interval_without_count_is_refused_in_a_request_response_run():
    clock = VirtualClock()
    wf = ticker(clock, Interval(1.0), [])
    with pytest.raises(RunError, match=r"'tick'.*count"):
        await wf.run()


def test_interval_arguments_are_checked():
    with pytest.raises(ValueError, match=r"seconds"):
        Interval(0)
    with pytest.raises(ValueError, match=r"count"):
        Interval(1, count=0)
    assert Interval(1.5, count=2).describe() == "interval(1.5s, count=2)"


def test_join_state_dumps_and_loads_the_values_that_ran_ahead():
    from nanobrain.core.data_units import DataUnit as Unit

    def armed():
        units = {"a": Unit("a", int), "b": Unit("b", int)}
        return AllDataReceived().arm(units, ("a", "b"), ("a", "b"))

    state = armed()
    assert state.offer("a", 1) is None
    assert state.offer("a", 2) is None
    dumped = state.dump()
    assert dumped == {"waiting": {"a": [1, 2]}}
    restored = armed()
    restored.load(dumped)
    assert restored.offer("b", 10) == {"a": 1, "b": 10}
    assert restored.offer("b", 20) == {"a": 2, "b": 20}
    assert restored.dump() == {}
    with pytest.raises(ValueError, match="no linked input 'c'"):
        armed().load({"waiting": {"c": [1]}})
