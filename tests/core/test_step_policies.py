"""Step policies: a breaker and a rate limit on an ordinary step, and the order they apply in."""

from __future__ import annotations

import asyncio

import pytest
from tests.infrastructure.parallel.parallel_helpers import drive

from nanobrain import FunctionStep, RetryPolicy, StepError, VirtualClock, Workflow, step
from nanobrain.infrastructure.parallel import BreakerPolicy, BreakerState, CircuitBreaker, CircuitOpen, TokenBucket
from nanobrain.testing import FaultyStep, InjectedFault, SimulatedProcessor


async def test_a_step_with_a_breaker_fails_fast_while_open_and_recovers() -> None:
    clock = VirtualClock()
    breaker = CircuitBreaker("api", BreakerPolicy(min_calls=2, cool_down=10), clock=clock)
    guarded = FaultyStep(SimulatedProcessor("api", clock=clock), fail_rate=1.0, breaker=breaker)
    workflow = Workflow.sequence(guarded, name="wf")
    assert guarded.name == "api" and list(guarded.inputs) == ["request"]
    causes = []
    for _ in range(3):
        with pytest.raises(StepError) as caught:
            await workflow.run(request=1)
        causes.append(type(caught.value.__cause__))
    assert causes == [InjectedFault, InjectedFault, CircuitOpen]
    assert guarded.calls == 2  # the third call never reached it
    guarded.fail_rate = 0.0
    await clock.advance(10)
    assert await workflow.run(request=2) == {"response": {"processor": "api", "request": 2}}
    assert breaker.state is BreakerState.CLOSED


async def test_a_rate_limited_step_waits_for_tokens_on_the_clock() -> None:
    clock = VirtualClock()
    limited = SimulatedProcessor("api", clock=clock)
    limited.rate_limit = TokenBucket(2.0, capacity=1, clock=clock)
    workflow = Workflow.sequence(limited, name="wf")
    done: list[float] = []

    async def one(i: int) -> None:
        await workflow.run(request=i)
        done.append(clock.now())

    tasks = [asyncio.create_task(one(i)) for i in range(4)]
    await drive(clock, tasks, step=0.05)
    assert done == pytest.approx([0.0, 0.5, 1.0, 1.5])


async def test_each_retry_attempt_passes_the_breaker_before_it_waits_for_a_token() -> None:
    clock = VirtualClock()
    calls: list[float] = []

    async def failing(request: int) -> int:
        calls.append(clock.now())
        raise ConnectionError("down")

    failing_step = FunctionStep(
        failing,
        retry=RetryPolicy(attempts=3, initial=0, jitter=0),
        breaker=CircuitBreaker("failing", BreakerPolicy(consecutive_failures=2, cool_down=100), clock=clock),
        rate_limit=TokenBucket(1.0, capacity=1, clock=clock),
        timeout=0.5,  # shorter than the wait for the second token: that wait is not timed
    )
    run = asyncio.create_task(Workflow.sequence(failing_step, name="wf").run(request=7))
    await drive(clock, [run], step=0.05)
    with pytest.raises(StepError) as caught:
        run.result()
    # Two attempts, one token each; the breaker opened and failed the third before it took a token.
    assert calls == pytest.approx([0.0, 1.0], abs=0.06)
    assert isinstance(caught.value.__cause__, CircuitOpen)
    assert clock.now() < 1.5


async def test_the_step_decorator_accepts_the_policies() -> None:
    bucket = TokenBucket(100.0)

    @step(rate_limit=bucket)
    async def echo(text: str) -> str:
        return text

    assert echo.rate_limit is bucket and echo.breaker is None
    assert await Workflow.sequence(echo, name="wf").run(text="hi") == {"result": "hi"}
