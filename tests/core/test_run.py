"""The run: per-run state, concurrency per step, stream ports, cancellation, source steps."""

from __future__ import annotations

import asyncio
import json

import pytest

from nanobrain import FileUnit, FunctionStep, OnUpdate, Step, StreamUnit, Workflow, step


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def echo_workflow(s: Step, inputs=None, outputs=None) -> Workflow:
    wf = Workflow("w", inputs=inputs or {"x": int}, outputs=outputs or {"y": int}, steps=[s])
    wf.link("inputs.x", f"{s.name}.{next(iter(s.inputs))}")
    wf.link(f"{s.name}.{next(iter(s.outputs))}", "outputs.y")
    return wf


async def test_runs_have_their_own_ids_and_units():
    @step
    def inc(x: int) -> int:
        return x + 1

    wf = echo_workflow(inc)
    first, second = wf.new_run(), wf.new_run()
    assert first.run_id != second.run_id
    assert first.inputs["x"] is not second.inputs["x"]
    assert first.steps[0].units["x"] is not second.steps[0].units["x"]
    assert first.steps[0].units["x"] is not inc.inputs["x"], "the step's template unit is never written"
    assert await first.execute({"x": 1}) == {"y": 2}
    assert not second.inputs["x"].has_value
    assert not inc.inputs["x"].has_value


async def test_run_state_is_a_serializable_view_at_step_boundaries():
    @step
    def inc(x: int) -> int:
        return x + 1

    wf = echo_workflow(inc)
    run = wf.new_run()
    await run.execute({"x": 41})
    state = json.loads(json.dumps(run.state()))
    assert state["run_id"] == run.run_id
    assert state["inputs"] == {"x": 41}
    assert state["outputs"] == {"y": 42}
    assert state["steps"]["inc"] == {
        "inputs": {"x": 41},
        "outputs": {"result": 42},
        "fired": 1,
        "pending": [],
        "running": 0,
        "waiting": {},
        "collecting": {},
    }
    assert run.active == 0
    assert run.error is None


async def test_run_state_holds_pending_firings_and_values_a_join_is_waiting_for():
    release = asyncio.Event()

    class Slow(Step):
        inputs = {"x": int}
        outputs = {"result": int}

        async def process(self, inputs: dict) -> dict:
            await release.wait()
            return {"result": inputs["x"]}

    class Join(Step):
        inputs = {"a": int, "b": int}
        outputs = {"total": int}

        async def process(self, inputs: dict) -> dict:
            return {"total": inputs["a"] + inputs["b"]}

    wf = Workflow("w", inputs={"a": int, "b": int, "x": int}, outputs={"total": int})
    wf.add(Slow("slow"))
    wf.add(Join("join"))
    wf.link("inputs.x", "slow.x")
    wf.link("inputs.a", "join.a")
    wf.link("inputs.b", "join.b")
    wf.link("join.total", "outputs.total")
    async with wf.start() as handle:
        await handle.send(x=1)
        await handle.send(x=2)
        await handle.send(a=10)
        await handle.send(a=20)
        await asyncio.sleep(0)
        state = json.loads(json.dumps(handle.run.state()))
        assert state["steps"]["slow"]["pending"] == [{"x": 2}]  # x=1 is running
        assert state["steps"]["join"]["waiting"] == {"a": [10, 20]}
        release.set()
        await handle.send(b=1)
        await handle.idle()
        assert handle.outputs == {"total": 11}


async def test_source_steps_without_inputs_fire_once_per_run():
    fired: list[int] = []

    @step
    def source() -> int:
        fired.append(1)
        return len(fired)

    @step
    def double(n: int) -> int:
        return n * 2

    wf = Workflow("w", outputs={"y": int}, steps=[source, double])
    wf.link(source, double)
    wf.link(double, "outputs.y")
    assert await wf.run() == {"y": 2}
    assert await wf.run() == {"y": 4}
    assert fired == [1, 1]


async def test_step_concurrency_bounds_parallel_firings():
    running = 0
    peak = 0
    release = asyncio.Event()
    order: list[int] = []

    @step(trigger=OnUpdate(), concurrency=3)
    async def work(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        order.append(x)
        running -= 1
        return x

    wf = echo_workflow(work)
    async with wf.start() as handle:
        for i in range(7):
            await handle.send(x=i)
        await settle()
        assert running == 3, "exactly `concurrency` firings run at once"
        release.set()
        await handle.idle()
    assert peak == 3
    assert sorted(order) == list(range(7))


async def test_default_concurrency_runs_firings_one_at_a_time_in_order():
    running = 0
    peak = 0
    order: list[int] = []

    @step(trigger=OnUpdate())
    async def work(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        order.append(x)
        running -= 1
        return x

    wf = echo_workflow(work)
    async with wf.start() as handle:
        for i in range(25):
            await handle.send(x=i)
        outputs = await handle.idle()
    assert peak == 1
    assert order == list(range(25))
    assert outputs == {"y": 24}


async def test_stream_input_port_bounds_pending_firings():
    release = asyncio.Event()
    taken: list[int] = []

    class Consumer(Step):
        inputs = {"item": StreamUnit("item", int, maxsize=2)}
        outputs = {"done": int}

        async def process(self, inputs):
            await release.wait()
            taken.append(inputs["item"])
            return {"done": inputs["item"]}

    wf = Workflow("w", inputs={"x": int}, outputs={"y": int}, steps=[Consumer()])
    wf.link("inputs.x", "consumer.item")
    wf.link("consumer.done", "outputs.y")
    async with wf.start() as handle:
        for i in range(3):  # one running, two pending
            await handle.send(x=i)
        blocked = asyncio.create_task(handle.send(x=3))
        await settle()
        assert not blocked.done(), "a full stream port makes the producer wait"
        release.set()
        await asyncio.wait_for(blocked, timeout=5)
        assert await handle.idle() == {"y": 3}
    assert taken == [0, 1, 2, 3]


async def test_stream_units_as_workflow_inputs_and_step_outputs_never_fill_up():
    class Relay(Step):
        inputs = {"x": int}
        outputs = {"y": StreamUnit("y", int, maxsize=2)}

        async def process(self, inputs):
            return {"y": inputs["x"]}

    wf = Workflow(
        "w",
        inputs={"x": StreamUnit("x", int, maxsize=2)},
        outputs={"y": StreamUnit("y", int, maxsize=2)},
        steps=[Relay()],
    )
    wf.link("inputs.x", "relay.x")
    wf.link("relay.y", "outputs.y")
    async with wf.start() as handle:
        for i in range(10):  # far more than the declared buffers hold, with nobody reading them
            await asyncio.wait_for(handle.send(x=i), timeout=5)
        assert await handle.idle() == {"y": 9}
    for i in range(5):
        assert await wf.run(x=i) == {"y": i}


async def test_file_unit_port_persists_what_reaches_it(tmp_path):
    path = tmp_path / "last.json"

    class Remember(Step):
        inputs = {"value": FileUnit("value", path=path)}
        outputs = {"saved": dict}

        async def process(self, inputs):
            return {"saved": inputs["value"]}

    wf = Workflow("w", inputs={"v": dict}, outputs={"saved": dict}, steps=[Remember()])
    wf.link("inputs.v", "remember.value")
    wf.link("remember.saved", "outputs.saved")
    assert await wf.run(v={"a": 1}) == {"saved": {"a": 1}}
    assert json.loads(path.read_text()) == {"a": 1}
    assert FileUnit("value", path=path).get() == {"a": 1}


async def test_cancelling_a_run_cancels_its_steps():
    started = asyncio.Event()
    cancelled: list[str] = []

    def sleeper(name: str):
        async def sleep_long(x: int) -> int:
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(name)
                raise
            return x

        return step(name=name)(sleep_long)

    a, b = sleeper("a"), sleeper("b")
    wf = Workflow("w", inputs={"x": int}, outputs={"y": int}, steps=[a, b])
    wf.link("inputs.x", "a.x")
    wf.link("inputs.x", "b.x")
    wf.link("a.result", "outputs.y")
    events = []
    run = asyncio.create_task(wf.invoke({"x": 1}, on_event=events.append))
    await asyncio.wait_for(started.wait(), timeout=5)
    await settle()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert sorted(cancelled) == ["a", "b"]
    assert events[-1].type == "run_failed"


async def test_run_error_is_kept_on_the_run():
    @step
    def fail(x: int) -> int:
        raise RuntimeError("nope")

    run = echo_workflow(fail).new_run()
    with pytest.raises(Exception, match=r"nope") as info:
        await run.execute({"x": 1})
    assert run.error is info.value


async def test_a_failing_branch_stops_siblings_that_had_not_started_without_hanging():
    """A worker task cancelled before it ever ran used to keep the run waiting forever."""
    from nanobrain import StepError

    def build() -> Workflow:
        wf = Workflow("fan", inputs={"x": int}, outputs={"y": int})
        for name in ("first", "second", "third", "fourth"):

            def body(x: int, _name: str = name) -> int:
                if _name == "second":
                    raise ValueError("second failed")
                return x

            body.__name__ = name
            wf.add(step(body))
            wf.link("inputs.x", f"{name}.x")
        wf.link("fourth.result", "outputs.y")
        return wf

    with pytest.raises(StepError, match="second failed"):
        await asyncio.wait_for(build().run(x=1), 5)


async def test_runs_leave_no_reference_cycles_behind():
    """Each run's objects are freed by reference counting alone: no work for the cyclic GC."""
    import gc

    from nanobrain import Map

    def square(x: int) -> int:
        return x * x

    chain = Workflow.sequence(*[FunctionStep(lambda x: x + 1, f"s{i}") for i in range(5)])
    mapped = Workflow.sequence(Map(square, max_concurrency=4))
    await chain.run(x=1)
    await mapped.run(x=[1, 2])
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            await chain.run(x=1)
            await mapped.run(x=[1, 2, 3, 4, 5])
            assert [e.type async for e in chain.stream(x=1)][-1] == "run_finished"
        # Only our own objects count: threads left by earlier tests (Dask's, the executors') may make cyclic
        # garbage of their own while the GC is off.
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        ours = [type(o).__qualname__ for o in gc.garbage if _is_nanobrain_object(o)]
        assert ours == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _is_nanobrain_object(obj: object) -> bool:
    code = getattr(obj, "f_code", None) or getattr(obj, "cr_code", None) or getattr(obj, "__code__", None)
    if code is not None:
        return "/nanobrain/" in code.co_filename
    return type(obj).__module__.startswith("nanobrain")


async def test_steps_that_never_wait_get_no_queues():
    chain = Workflow.sequence(*[FunctionStep(lambda x: x + 1, f"s{i}") for i in range(3)])
    run = chain.new_run()
    await run.execute({"x": 0})
    assert all(sr.pending is None and sr.blocked is None for sr in run.steps)

    @step(concurrency=1)
    async def slow(x: int) -> int:
        await asyncio.sleep(0.001)
        return x

    wf = Workflow("w", inputs={"x": int}, outputs={"y": int}, steps=[slow])
    wf.link("inputs.x", "slow.x")
    wf.link("slow.result", "outputs.y")
    handle = wf.start()
    async with handle:
        await handle.send(x=1)
        await handle.send(x=2)  # the step is busy: this firing waits in its queue
        assert handle.run.steps[0].pending is not None
        await handle.idle()
