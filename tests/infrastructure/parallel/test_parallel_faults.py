"""Fault injection is deterministic from its seed; simulated processors answer on the clock."""

from __future__ import annotations

import asyncio

import pytest
from tests.infrastructure.parallel.parallel_helpers import settle

from nanobrain import VirtualClock
from nanobrain.testing import FaultyStep, InjectedFault, SimulatedProcessor


async def fates(step: FaultyStep, calls: int) -> list[str]:
    outcomes = []
    for i in range(calls):
        try:
            await step.process({"request": i})
            outcomes.append("ok")
        except InjectedFault:
            outcomes.append("fail")
    return outcomes


async def test_the_same_seed_gives_the_same_fates() -> None:
    def make(seed: int) -> FaultyStep:
        return FaultyStep(SimulatedProcessor("p"), fail_rate=0.3, seed=seed)

    assert await fates(make(1), 50) == await fates(make(1), 50)
    assert await fates(make(1), 50) != await fates(make(2), 50)


async def test_the_fail_rate_is_the_share_of_failed_calls() -> None:
    step = FaultyStep(SimulatedProcessor("p"), fail_rate=0.2, seed=3)
    outcomes = await fates(step, 2000)
    assert 0.17 < outcomes.count("fail") / 2000 < 0.23
    assert step.failures == outcomes.count("fail") and step.calls == 2000


async def test_slow_calls_wait_on_the_clock_and_hung_calls_wait_until_cancelled() -> None:
    clock = VirtualClock()
    slow = FaultyStep(SimulatedProcessor("s", latency=1.0, clock=clock), slow_rate=1.0, slow_by=4.0, clock=clock)
    task = asyncio.create_task(slow.process({"request": 1}))
    await clock.advance(4.9)
    assert not task.done()
    await clock.advance(0.2)
    assert task.result() == {"response": {"processor": "s", "request": 1}}

    hung = FaultyStep(SimulatedProcessor("h", clock=clock), hang_rate=1.0)
    task = asyncio.create_task(hung.process({"request": 1}))
    await clock.advance(1000)
    assert not task.done() and hung.hangs == 1
    task.cancel()
    await settle()
    assert task.cancelled()


async def test_faults_can_be_switched_off_and_errors_chosen() -> None:
    step = FaultyStep(SimulatedProcessor("p"), fail_rate=1.0, error=lambda: ConnectionResetError("reset"))
    with pytest.raises(ConnectionResetError):
        await step.process({"request": 1})
    step.fail_rate = 0.0
    assert (await step.process({"request": 2}))["response"]["request"] == 2
    assert step.inputs.keys() == {"request"} and step.outputs.keys() == {"response"}


def test_rates_must_add_up() -> None:
    with pytest.raises(ValueError, match="add up"):
        FaultyStep(SimulatedProcessor("p"), fail_rate=0.7, hang_rate=0.5)
