"""Wrappers give one step a breaker or a rate limit inside an ordinary workflow."""

from __future__ import annotations

import asyncio

import pytest
from tests.infrastructure.parallel.parallel_helpers import drive

from nanobrain import StepError, VirtualClock, Workflow
from nanobrain.infrastructure.parallel import (
    BreakerPolicy,
    BreakerState,
    BreakerStep,
    CircuitBreaker,
    CircuitOpen,
    FaultyStep,
    InjectedFault,
    RateLimitedStep,
    SimulatedProcessor,
    TokenBucket,
)


async def test_a_breaker_step_fails_fast_while_open_and_recovers() -> None:
    clock = VirtualClock()
    inner = FaultyStep(SimulatedProcessor("api", clock=clock), fail_rate=1.0)
    guarded = BreakerStep(inner, CircuitBreaker("api", BreakerPolicy(min_calls=2, cool_down=10), clock=clock))
    workflow = Workflow.sequence(guarded, name="wf")
    assert guarded.name == "api" and list(guarded.inputs) == ["request"]
    causes = []
    for _ in range(3):
        with pytest.raises(StepError) as caught:
            await workflow.run(request=1)
        causes.append(type(caught.value.__cause__))
    assert causes == [InjectedFault, InjectedFault, CircuitOpen]
    assert inner.calls == 2  # the third call never reached it
    inner.fail_rate = 0.0
    await clock.advance(10)
    assert await workflow.run(request=2) == {"response": {"processor": "api", "request": 2}}
    assert guarded.breaker.state is BreakerState.CLOSED


async def test_a_rate_limited_step_waits_for_tokens_on_the_clock() -> None:
    clock = VirtualClock()
    step = RateLimitedStep(SimulatedProcessor("api", clock=clock), TokenBucket(2.0, capacity=1, clock=clock))
    done: list[float] = []

    async def one(i: int) -> None:
        await step.process({"request": i})
        done.append(clock.now())

    tasks = [asyncio.create_task(one(i)) for i in range(4)]
    await drive(clock, tasks, step=0.05)
    assert done == pytest.approx([0.0, 0.5, 1.0, 1.5])
