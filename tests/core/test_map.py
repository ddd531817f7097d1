"""Map: one step per item of a run-time list, in order, bounded, with a failure policy."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from map_helpers import cube, pid_of

import nanobrain as nb
from nanobrain import ItemFailed, Map, ProcessExecutor, StepError, ThreadExecutor, Workflow, step
from nanobrain.core.durable import MemoryJournalStore


def square(x: int) -> int:
    return x * x


def total(result: list[int]) -> int:
    return sum(result)


async def test_a_hundred_way_fan_out_and_sum_is_a_few_lines():
    wf = Workflow.sequence(Map(square), total, name="sum_of_squares")
    assert await wf.run(x=list(range(100))) == {"result": sum(i * i for i in range(100))}


async def test_results_keep_input_order_whatever_order_items_finish_in():
    async def slow_first(x: int) -> int:
        await asyncio.sleep(0.001 * (10 - x))  # item 0 finishes last
        return x

    wf = Workflow.sequence(Map(slow_first))
    assert await wf.run(x=list(range(10))) == {"result": list(range(10))}


async def test_max_concurrency_bounds_items_in_flight():
    running = 0
    peak = 0

    async def tracked(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.002)
        running -= 1
        return x

    wf = Workflow.sequence(Map(tracked, max_concurrency=3))
    assert await wf.run(x=list(range(12))) == {"result": list(range(12))}
    assert peak == 3


async def test_other_inputs_go_to_every_item_and_every_output_becomes_a_list():
    @step(outputs=["low", "high"])
    def split(x: int, offset: int) -> dict[str, int]:
        return {"low": x + offset, "high": x + 10 * offset}

    mapped = Map(split, over="x")
    assert list(mapped.inputs) == ["x", "offset"]
    assert list(mapped.outputs) == ["low", "high"]
    wf = Workflow("w", inputs={"xs": list[int], "offset": int}, outputs={"low": None, "high": None})
    wf.add(mapped)
    wf.link("inputs.xs", "split.x")
    wf.link("inputs.offset", "split.offset")
    wf.link("split.low", "outputs.low")
    wf.link("split.high", "outputs.high")
    assert await wf.run(xs=[1, 2], offset=1) == {"low": [2, 3], "high": [11, 12]}


async def test_an_empty_list_gives_empty_results():
    wf = Workflow.sequence(Map(square), total)
    assert await wf.run(x=[]) == {"result": 0}


def flaky(x: int) -> int:
    if x % 3 == 0:
        raise ValueError(f"no multiples of 3: {x}")
    return x


async def test_fail_fast_stops_the_other_items_and_names_the_item():
    started: list[int] = []

    async def slow_unless_bad(x: int) -> int:
        started.append(x)
        if x == 1:
            raise ValueError("bad item")
        await asyncio.sleep(5)
        return x

    wf = Workflow.sequence(Map(slow_unless_bad, max_concurrency=2))
    with pytest.raises(StepError) as caught:
        await asyncio.wait_for(wf.run(x=[0, 1, 2, 3]), timeout=2)
    failure = caught.value.error
    assert isinstance(failure, ItemFailed)
    assert failure.index == 1 and failure.item == 1
    assert isinstance(failure.error, ValueError)
    assert "item 1 (1) failed: ValueError: bad item" in str(caught.value)
    assert 3 not in started  # no new item started after the failure


async def test_collect_keeps_going_and_puts_errors_beside_results():
    wf = Workflow("w", inputs={"xs": list[int]}, outputs={"result": None, "errors": None})
    wf.add(Map(flaky, over="x", on_error="collect"))
    wf.link("inputs.xs", "flaky.x")
    wf.link("flaky.result", "outputs.result")
    wf.link("flaky.errors", "outputs.errors")
    out = await wf.run(xs=[1, 3, 4, 6])
    assert out["result"] == [1, None, 4, None]
    assert [(e.index, e.item) for e in out["errors"]] == [(1, 3), (3, 6)]
    assert all(isinstance(e.error, ValueError) for e in out["errors"])


async def test_each_item_reports_its_own_events_with_the_map_firing():
    wf = Workflow.sequence(Map(flaky, on_error="collect"), name="w")
    events = [e async for e in wf.stream(x=[1, 3])]
    per_item = [(e.type, e.step, e.firing) for e in events if getattr(e, "step", "").startswith("flaky[")]
    assert per_item == [
        ("step_started", "flaky[0]", 1),
        ("step_finished", "flaky[0]", 1),
        ("step_started", "flaky[1]", 1),
        ("step_failed", "flaky[1]", 1),
    ]


async def test_cancelling_the_run_cancels_every_item_in_flight():
    cancelled = 0
    started = asyncio.Event()

    async def wait_forever(x: int) -> int:
        nonlocal cancelled
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return x

    wf = Workflow.sequence(Map(wait_forever, max_concurrency=4))
    task = asyncio.ensure_future(wf.run(x=list(range(10))))
    await started.wait()
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled == 4


async def test_a_map_timeout_cancels_its_items():
    async def slow(x: int) -> int:
        await asyncio.sleep(60)
        return x

    wf = Workflow.sequence(Map(slow, timeout=0.05))
    with pytest.raises(StepError, match=r"did not finish within 0\.05s"):
        await asyncio.wait_for(wf.run(x=[1, 2, 3]), timeout=5)


async def test_the_inner_step_retries_each_item_on_its_own():
    attempts: dict[int, int] = {}

    def once_flaky(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if attempts[x] == 1 and x == 2:
            raise ConnectionError("transient")
        return x

    inner = nb.FunctionStep(once_flaky, retry=nb.RetryPolicy(attempts=2, initial=0.0, jitter=0.0))
    wf = Workflow.sequence(Map(inner))
    assert await wf.run(x=[1, 2, 3]) == {"result": [1, 2, 3]}
    assert attempts == {1: 1, 2: 2, 3: 1}


async def test_items_run_on_the_inner_steps_executor_threads_and_processes():
    threads = ThreadExecutor(max_workers=2)
    processes = ProcessExecutor(max_workers=2)
    try:
        on_threads = Workflow.sequence(Map(cube, executor=threads, max_concurrency=2))
        assert await on_threads.run(x=[1, 2, 3]) == {"result": [1, 8, 27]}
        on_processes = Workflow.sequence(Map(pid_of, executor=processes, max_concurrency=2))
        pids = (await on_processes.run(x=[1, 2, 3, 4]))["result"]
        assert os.getpid() not in pids
    finally:
        await threads.aclose()
        await processes.aclose()


async def test_a_nested_workflow_runs_per_item_with_its_own_run_id():
    inner = Workflow.sequence(square, name="inner")
    runs: list[str] = []
    wf = Workflow.sequence(Map(inner, name="each"), name="outer")
    events = [e async for e in wf.stream(x=[2, 3])]
    runs = [e.run_id for e in events if e.type == "run_started" and e.path.startswith("outer/each[")]
    assert len(set(runs)) == 2
    assert events[-1].outputs == {"result": [4, 9]}  # type: ignore[attr-defined]


async def test_a_map_over_a_processor_pool_spreads_items_over_it():
    from nanobrain.infrastructure.parallel.parallel_step import ParallelStep

    calls: list[str] = []

    def member(tag: str) -> nb.Step:
        def work(x: int) -> int:
            calls.append(tag)
            return x + 1

        return nb.FunctionStep(work, name=tag)

    pool = ParallelStep("pool", [member("a"), member("b")], balancer="round_robin")
    try:
        wf = Workflow.sequence(Map(pool, over="x", max_concurrency=4))
        assert await wf.run(x=[1, 2, 3, 4]) == {"result": [2, 3, 4, 5]}
        assert sorted(calls) == ["a", "a", "b", "b"]
    finally:
        await pool.aclose()


def test_bad_declarations_are_refused_with_the_fix():
    def two(a: int, b: int) -> int:
        return a + b

    with pytest.raises(ValueError, match="say which one takes the items with over='NAME'"):
        Map(two)
    with pytest.raises(ValueError, match="has no input 'c'"):
        Map(two, over="c")
    with pytest.raises(ValueError, match="on_error must be 'fail' or 'collect'"):
        Map(square, on_error="ignore")  # type: ignore[arg-type]


async def test_a_value_that_is_not_a_list_is_a_clear_error():
    wf = Workflow("w", inputs={"x": Any}, outputs={"result": None})
    wf.add(Map(square))
    wf.link("inputs.x", "square.x")
    wf.link("square.result", "outputs.result")
    with pytest.raises(nb.UnitTypeError, match=r"'square\.x' expects list"):
        await wf.run(x="123")
    with pytest.raises(TypeError, match="map 'square': input 'x' must be a list, got str"):
        await Map(square).process({"x": "123"})  # called directly, without the unit's check


executed: list[int] = []


class Crash(Exception):
    pass


def crash_on_five(x: int) -> int:
    executed.append(x)
    if x == 5 and executed.count(5) == 1:
        raise Crash("killed at item 5")
    return x * 10


async def test_a_durable_map_resumes_without_redoing_finished_items():
    store = MemoryJournalStore()
    executed.clear()
    wf = Workflow.sequence(Map(crash_on_five, max_concurrency=1), total, name="durable_map")
    with pytest.raises(StepError, match="killed at item 5"):
        await wf.run(x=list(range(8)), durable=store, run_id="m1")
    await store.update("m1", status="running", error="")  # as a killed process leaves it
    assert executed == [0, 1, 2, 3, 4, 5]
    assert await wf.resume("m1", durable=store) == {"result": sum(i * 10 for i in range(8))}
    assert executed == [0, 1, 2, 3, 4, 5, 5, 6, 7]  # items 0-4 came from the journal


def test_a_durable_run_notices_when_the_mapped_step_or_a_fan_in_changed():
    from nanobrain.core.journal import definition_changes, describe_workflow

    before = describe_workflow(Workflow.sequence(Map(square), total))
    after = describe_workflow(Workflow.sequence(Map(cube, name="square"), total))
    assert any("item_step" in change for change in definition_changes(before, after))

    def joined(fan_in: str) -> Workflow:
        wf = Workflow("w", inputs={"x": int}, outputs={"y": None})
        wf.add(square)
        wf.link("inputs.x", "square.x", fan_in=fan_in)
        wf.link("square.result", "outputs.y")
        return wf

    changes = definition_changes(describe_workflow(joined("merge")), describe_workflow(joined("collect")))
    assert "links added: inputs.x -> square.x (Link, collect)" in changes


async def test_a_collecting_join_resumes_with_the_values_collected_before_the_crash():
    from collections import Counter

    ran: Counter[str] = Counter()
    crash = {"armed": True}

    def branch(name: str, factor: int) -> nb.Step:
        def body(x: int) -> int:
            ran[name] += 1
            if name == "c" and crash["armed"]:
                crash["armed"] = False
                raise Crash("killed in branch c")
            return x * factor

        body.__name__ = name
        return step(body)

    def build() -> Workflow:
        wf = Workflow("collect", inputs={"x": int}, outputs={"total": int})
        for name, factor in (("a", 1), ("b", 2), ("c", 3)):
            wf.add(branch(name, factor))
            wf.link("inputs.x", f"{name}.x")
        wf.add(total)
        wf.collect("total.result", "a.result", "b.result", "c.result")
        wf.link("total.result", "outputs.total")
        return wf

    store = MemoryJournalStore()
    with pytest.raises(StepError, match="killed in branch c"):
        await build().run(x=2, durable=store, run_id="c1")
    await store.update("c1", status="running", error="")
    assert await build().resume("c1", durable=store) == {"total": 12}
    assert ran["a"] == 1 and ran["b"] == 1 and ran["c"] == 2  # a and b came from the journal
