"""Links: direct, transform, conditional (routers), queue (bounded, backpressure), bounded cycles."""

from __future__ import annotations

import asyncio

import pytest

import nanobrain as nb
from nanobrain import (
    ConditionalLink,
    CycleLimitExceeded,
    Link,
    OnUpdate,
    QueueLink,
    StepError,
    TransformLink,
    Workflow,
    step,
)
from nanobrain.core.links import parse_endpoint


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


# -- endpoints and construction ----------------------------------------------------------------


def test_endpoints_must_name_a_step_and_a_unit():
    assert parse_endpoint("summarize.text") == ("summarize", "text")
    for bad in ("summarize", "a.b.c", ".x", "x.", ""):
        with pytest.raises(ValueError, match=r"step.unit"):
            parse_endpoint(bad)
    with pytest.raises(ValueError, match=r"step.unit"):
        Link("a", "b.x")


def test_link_options_are_checked():
    with pytest.raises(ValueError, match=r"max_iterations"):
        Link("a.x", "b.x", max_iterations=0)
    with pytest.raises(TypeError, match=r"transform must be callable"):
        TransformLink("a.x", "b.x", "upper")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"'when' must be callable"):
        ConditionalLink("a.x", "b.x", True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"maxsize"):
        QueueLink("a.x", "b.x", maxsize=0)
    assert Link("a.x", "b.y").name == "a.x -> b.y"


def test_workflow_link_builds_the_right_kind():
    wf = Workflow("w")
    assert type(wf.link("a.x", "b.x")) is Link
    assert type(wf.link("a.x", "b.x", transform=str)) is TransformLink
    assert type(wf.link("a.x", "b.x", when=bool)) is ConditionalLink
    queue = wf.link("a.x", "b.x", maxsize=3)
    assert type(queue) is QueueLink
    assert queue.maxsize == 3
    with pytest.raises(ValueError, match=r"conditional.*queue"):
        wf.link("a.x", "b.x", when=bool, maxsize=3)
    with pytest.raises(ValueError, match=r"transform.*queue"):
        wf.link("a.x", "b.x", transform=str, maxsize=3)


# -- carrying values ---------------------------------------------------------------------------


async def test_direct_link_carries_the_value_unchanged():
    marker = object()

    @step
    def identity(x):
        return x

    wf = Workflow("w", inputs=["x"], outputs=["y"], steps=[identity])
    wf.link("inputs.x", "identity.x")
    wf.link("identity.result", "outputs.y")
    outputs = await wf.run(x=marker)
    assert outputs["y"] is marker


async def test_transform_link_changes_the_value_on_the_way():
    @step
    def length(text: str) -> int:
        return len(text)

    wf = Workflow("w", inputs={"text": str}, outputs={"shout": str, "size": int}, steps=[length])
    wf.link("inputs.text", "length.text", transform=lambda s: s.strip())
    wf.link("inputs.text", "outputs.shout", transform=str.upper)
    wf.link("length.result", "outputs.size", transform=lambda n: n * 100)
    assert await wf.run(text="  hey  ") == {"shout": "  HEY  ", "size": 300}


async def test_conditional_links_make_a_router():
    seen: dict[str, list[int]] = {"small": [], "large": [], "negative": []}

    def branch(label: str):
        def handle(n: int) -> str:
            seen[label].append(n)
            return f"{label}:{n}"

        return step(name=label)(handle)

    wf = Workflow("router", inputs={"n": int}, outputs={"route": str})
    for label in seen:
        wf.add(branch(label))
        wf.link(f"{label}.result", "outputs.route")
    wf.link("inputs.n", "negative.n", when=lambda n: n < 0)
    wf.link("inputs.n", "small.n", when=lambda n: 0 <= n < 10)
    wf.link("inputs.n", "large.n", when=lambda n: n >= 10, transform=lambda n: n // 10)

    assert await wf.run(n=3) == {"route": "small:3"}
    assert await wf.run(n=-1) == {"route": "negative:-1"}
    assert await wf.run(n=420) == {"route": "large:42"}
    assert seen == {"small": [3], "large": [42], "negative": [-1]}


async def test_router_with_no_matching_link_sets_no_output():
    @step
    def only_even(n: int) -> int:
        return n

    wf = Workflow("w", inputs={"n": int}, outputs={"even": int}, steps=[only_even])
    wf.link("inputs.n", "only_even.n", when=lambda n: n % 2 == 0)
    wf.link("only_even.result", "outputs.even")
    assert await wf.run(n=4) == {"even": 4}
    assert await wf.run(n=3) == {}


# -- queue link: bounded, with backpressure ----------------------------------------------------


async def test_queue_link_makes_the_producer_wait_while_full():
    release = asyncio.Event()
    consumed: list[int] = []

    @step(trigger=OnUpdate())
    async def consume(x: int) -> None:
        await release.wait()
        consumed.append(x)

    wf = Workflow("w", inputs={"x": int}, steps=[consume])
    wf.link("inputs.x", "consume.x", maxsize=2)
    async with wf.start() as handle:
        await handle.send(x=1)  # taken by the (now blocked) step
        await handle.send(x=2)  # queued
        await handle.send(x=3)  # queued: the queue is full now
        blocked = asyncio.create_task(handle.send(x=4))
        await settle()
        assert not blocked.done(), "a full queue link must make the producer wait, not drop or grow"
        later = asyncio.create_task(handle.send(x=5))
        await settle()
        assert not later.done()

        release.set()
        await asyncio.wait_for(asyncio.gather(blocked, later), timeout=5)
        await handle.idle()
    assert consumed == [1, 2, 3, 4, 5]


async def test_cancelled_waiting_producer_delivers_nothing():
    release = asyncio.Event()
    consumed: list[int] = []

    @step(trigger=OnUpdate())
    async def consume(x: int) -> None:
        await release.wait()
        consumed.append(x)

    wf = Workflow("w", inputs={"x": int}, steps=[consume])
    wf.link("inputs.x", "consume.x", maxsize=1)
    async with wf.start() as handle:
        await handle.send(x=1)  # running
        await handle.send(x=2)  # queued: full
        given_up = asyncio.create_task(handle.send(x=3))
        await settle()
        assert not given_up.done()
        given_up.cancel()
        await asyncio.gather(given_up, return_exceptions=True)
        assert given_up.cancelled()
        waiting = asyncio.create_task(handle.send(x=4))
        await settle()
        release.set()
        await asyncio.wait_for(waiting, timeout=5)
        await handle.idle()
    assert consumed == [1, 2, 4]


async def test_queue_link_between_steps_keeps_order_under_backpressure():
    consumed: list[int] = []

    @step(trigger=OnUpdate())
    def produce(x: int) -> int:
        return x * 10

    @step(trigger=OnUpdate())
    async def consume(y: int) -> None:
        await asyncio.sleep(0)
        consumed.append(y)

    wf = Workflow("w", inputs={"x": int}, steps=[produce, consume])
    wf.link("inputs.x", "produce.x")
    wf.link("produce.result", "consume.y", maxsize=1)
    async with wf.start() as handle:
        for i in range(30):
            await handle.send(x=i)
        await handle.idle()
        assert handle.run.state()["steps"]["consume"]["pending"] == []
    assert consumed == [i * 10 for i in range(30)]


# -- cycles ------------------------------------------------------------------------------------


def counting_loop(limit: int, stop_at: int | None) -> Workflow:
    """inc -> inc while the value is below `stop_at` (forever when None), bounded by `limit`."""

    @step
    def inc(x: int) -> int:
        return x + 1

    def again(n: int) -> bool:
        return stop_at is None or n < stop_at

    wf = Workflow("loop", inputs={"x": int}, outputs={"y": int}, steps=[inc])
    wf.link("inputs.x", "inc.x")
    wf.link("inc.result", "inc.x", when=again, max_iterations=limit)
    wf.link("inc.result", "outputs.y", when=lambda n: not again(n))
    return wf


async def test_bounded_cycle_stops_through_its_predicate():
    events = []
    wf = counting_loop(limit=100, stop_at=5)
    outputs = await wf.invoke({"x": 0}, on_event=events.append)
    assert outputs == {"y": 5}
    assert [e.inputs["x"] for e in events if e.type == "step_started"] == [0, 1, 2, 3, 4]


async def test_each_run_gets_its_own_iteration_budget():
    wf = counting_loop(limit=5, stop_at=5)
    for _ in range(3):
        assert await wf.run(x=0) == {"y": 5}


async def test_cycle_that_hits_its_bound_raises_cycle_limit_exceeded():
    events = []
    wf = counting_loop(limit=3, stop_at=None)
    with pytest.raises(StepError) as info:
        await wf.invoke({"x": 0}, on_event=events.append)
    limit = info.value.__cause__
    assert isinstance(limit, CycleLimitExceeded)
    assert limit.limit == 3
    assert limit.link == "inc.result -> inc.x"
    assert "inc.result -> inc.x" in str(limit) and "3" in str(limit)
    # The step ran once for the input and once per allowed iteration, then the run stopped.
    assert [e.inputs["x"] for e in events if e.type == "step_started"] == [0, 1, 2, 3]
    assert events[-1].type == "run_failed"


async def test_cycle_between_two_steps_with_bound():
    @step
    def ping(n: int) -> int:
        return n + 1

    @step
    def pong(n: int) -> int:
        return n * 2

    wf = Workflow("w", inputs={"n": int}, outputs={"n": int}, steps=[ping, pong])
    wf.link("inputs.n", "ping.n")
    wf.link("ping.result", "pong.n")
    wf.link("pong.result", "ping.n", when=lambda n: n < 20, max_iterations=10)
    wf.link("pong.result", "outputs.n", when=lambda n: n >= 20)
    # 1 -> 2 -> 4 -> 5 -> 10 -> 11 -> 22
    assert await wf.run(n=1) == {"n": 22}


async def test_a_failing_transform_names_the_link() -> None:
    def broken(value: int) -> int:
        raise ValueError("transform broke")

    workflow = nb.Workflow("w", inputs={"x": int}, outputs={"y": int})
    workflow.add(nb.FunctionStep(lambda x: x, name="produce"))
    workflow.add(nb.FunctionStep(lambda y: y, name="consume"))
    workflow.link("inputs.x", "produce.x")
    workflow.link("produce.result", "consume.y", transform=broken)
    workflow.link("consume.result", "outputs.y")
    with pytest.raises(nb.StepError) as caught:
        await workflow.run(x=1)
    link_error = caught.value.__cause__
    assert isinstance(link_error, nb.LinkFailed)
    assert link_error.link == "produce.result -> consume.y"
    assert "transform broke" in str(link_error) and isinstance(link_error.__cause__, ValueError)
