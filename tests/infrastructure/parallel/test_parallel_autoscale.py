"""Autoscaling grows a pool under queueing or slow answers and shrinks it when idle, within bounds."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from tests.infrastructure.parallel.parallel_helpers import Recorder, drive, settle

from nanobrain import VirtualClock
from nanobrain.infrastructure.parallel import AutoscalePolicy, Autoscaler, ProcessorPool
from nanobrain.testing import SimulatedProcessor


async def test_grows_while_requests_queue_up_then_shrinks_back_when_idle() -> None:
    clock, recorder = VirtualClock(), Recorder()
    pool = ProcessorPool([SimulatedProcessor("worker", latency=1.0, clock=clock)], clock=clock, on_event=recorder)
    policy = AutoscalePolicy(
        min_size=1, max_size=4, interval=1.0, queue_per_processor=2, idle_utilization=0.5, idle_for=5.0, cooldown=2.0
    )
    scaler = Autoscaler(pool, policy=policy)
    sizes: list[int] = []
    async with scaler:
        tasks = [asyncio.create_task(pool.call({"request": i})) for i in range(40)]
        while not all(t.done() for t in tasks):
            await clock.advance(0.5)
            sizes.append(pool.size)
        assert max(sizes) == 4 and sizes == sorted(sizes)  # grew step by step, never past the bound
        grown = [e.data["size"] for e in recorder.of("pool_scaled")]
        assert grown == [2, 3, 4]
        served = {t.result()["response"]["processor"] for t in tasks}
        assert served == {"worker", "worker-1", "worker-2", "worker-3"}
        await clock.advance(60)
        await settle()
    scaled = recorder.of("pool_scaled")
    assert [e.data["size"] for e in scaled] == [2, 3, 4, 3, 2, 1]
    assert "waiting" in scaled[0].data["reason"] and "busy" in scaled[-1].data["reason"]
    assert [p.name for p in pool.processors] == ["worker"]  # what it added went first
    shrink_times = [e.time for e in scaled[3:]]
    assert all(b - a >= 2.0 for a, b in itertools.pairwise(shrink_times))


async def test_grows_when_answers_are_slower_than_the_latency_target_with_a_cooldown_between_steps() -> None:
    clock = VirtualClock()
    pool = ProcessorPool([SimulatedProcessor("slow", latency=2.0, clock=clock)], clock=clock)
    scaler = Autoscaler(pool, policy=AutoscalePolicy(max_size=3, max_latency=1.0, cooldown=10.0))
    assert await scaler.evaluate() == 0  # nothing measured yet
    task = asyncio.create_task(pool.call({"request": 1}))
    await drive(clock, [task])
    assert await scaler.evaluate() == 1
    assert await scaler.evaluate() == 0  # still slow, but within the cooldown
    await clock.advance(10.0)
    assert await scaler.evaluate() == 1
    await clock.advance(10.0)
    assert await scaler.evaluate() == 0  # at the maximum
    assert pool.size == 3


async def test_keeps_the_minimum_and_uses_the_factory() -> None:
    clock, recorder = VirtualClock(), Recorder()
    pool = ProcessorPool([], clock=clock, on_event=recorder)
    made: list[int] = []

    async def factory(n: int) -> SimulatedProcessor:
        made.append(n)
        return SimulatedProcessor("replica", clock=clock)

    scaler = Autoscaler(pool, factory, AutoscalePolicy(min_size=2, max_size=3))
    assert await scaler.evaluate() == 2
    assert made == [1, 2]
    assert [p.name for p in pool.processors] == ["replica", "replica-3"]  # names are made unique
    assert recorder.of("pool_scaled")[0].data["reason"] == "below the minimum size"


async def test_never_shrinks_below_the_minimum() -> None:
    clock = VirtualClock()
    steps = [SimulatedProcessor(f"p{i}", clock=clock) for i in range(3)]
    pool = ProcessorPool(steps, clock=clock)
    scaler = Autoscaler(pool, policy=AutoscalePolicy(min_size=2, max_size=5, idle_for=1.0, cooldown=0))
    for _ in range(10):
        await scaler.evaluate()
        await clock.advance(1.0)
    assert pool.size == 2


def test_policy_and_factory_are_checked() -> None:
    with pytest.raises(ValueError, match="min_size"):
        AutoscalePolicy(min_size=3, max_size=2)
    with pytest.raises(ValueError, match="needs a factory"):
        Autoscaler(ProcessorPool([]))
