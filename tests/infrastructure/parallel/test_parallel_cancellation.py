"""Nothing lost, nothing duplicated: under random cancellations of callers, with failing
processors and retries, every caller gets its own answer or its own error, each request is
served at most once, and the pool ends with no slot, queue entry or breaker probe left taken."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.infrastructure.parallel.parallel_helpers import settle

from nanobrain import Step, VirtualClock
from nanobrain.core.retry import RetryPolicy
from nanobrain.infrastructure.parallel import (
    BreakerPolicy,
    BreakerState,
    DeadlineExceeded,
    Processor,
    ProcessorPool,
    Request,
    RoundRobin,
)
from nanobrain.testing import FaultyStep, InjectedFault, SimulatedProcessor

scenario = st.fixed_dictionaries(
    {
        "processors": st.lists(
            st.tuples(st.sampled_from([0.1, 0.5, 1.0]), st.sampled_from([0.0, 0.0, 0.3, 1.0]), st.integers(1, 3)),
            min_size=1,
            max_size=5,
        ),
        # Per request: priority, and when its caller gives up (None: never).
        "requests": st.lists(
            st.tuples(st.integers(0, 3), st.one_of(st.none(), st.floats(0.0, 4.0))), min_size=1, max_size=40
        ),
        "queue_size": st.integers(1, 8),
        "balancer": st.sampled_from(["round_robin", "least_loaded", "fastest_response", "power_of_two"]),
        "deadline": st.one_of(st.none(), st.sampled_from([2.0, 5.0])),
        "seed": st.integers(0, 1000),
    }
)


async def run_scenario(spec: dict[str, Any]) -> None:
    clock = VirtualClock()
    simulated = [
        SimulatedProcessor(f"p{i}", latency=latency, clock=clock, concurrency=slots)
        for i, (latency, _, slots) in enumerate(spec["processors"])
    ]
    steps: list[Step] = [
        FaultyStep(s, fail_rate=fail, seed=spec["seed"] + i) if fail else s
        for i, (s, (_, fail, _)) in enumerate(zip(simulated, spec["processors"], strict=True))
    ]
    pool = ProcessorPool(
        steps,
        clock=clock,
        balancer=spec["balancer"],
        queue_size=spec["queue_size"],
        deadline=spec["deadline"],
        failover=RetryPolicy(attempts=3, initial=0.05, jitter=0.05, seed=spec["seed"]),
        breaker=BreakerPolicy(min_calls=2, cool_down=1.0),
    )
    tasks: list[asyncio.Task[Any]] = []
    for i, (priority, _) in enumerate(spec["requests"]):
        tasks.append(asyncio.create_task(pool.call({"request": i}, priority=priority)))
    cancel_at = {i: at for i, (_, at) in enumerate(spec["requests"]) if at is not None}
    step = 0.05
    while not all(t.done() for t in tasks):
        for i, at in list(cancel_at.items()):
            if at <= clock.now():
                tasks[i].cancel()
                del cancel_at[i]
        await clock.advance(step)
        # New requests never fill the queue past its bound (a retry, already admitted, may come back on top).
        assert sum(1 for r in pool.queue if r.attempt == 0) <= spec["queue_size"]
        assert clock.now() < 500, "requests never finished"
    await settle()

    served = Counter(r for s in simulated for r in s.handled)
    for i, task in enumerate(tasks):
        if task.cancelled():
            assert served[i] <= 1
        elif task.exception() is not None:
            assert isinstance(task.exception(), InjectedFault | DeadlineExceeded), task.exception()
            assert served[i] <= 1  # a deadline may end a request whose answer was being delivered
        else:
            assert task.result()["response"]["request"] == i  # the caller's own answer
            assert served[i] == 1  # served exactly once
    assert sum(served.values()) <= len(tasks)
    assert pool.in_flight == 0 and len(pool.queue) == 0
    for processor in pool.processors:
        assert processor.in_flight == 0
        breaker = processor.breaker
        assert breaker is not None
        if breaker.state is BreakerState.HALF_OPEN:
            assert breaker._probes_out == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario)
def test_no_request_is_lost_or_served_twice_under_cancellation(spec: dict[str, Any]) -> None:
    asyncio.run(run_scenario(spec))


async def test_a_caller_cancelled_while_running_frees_the_processor_for_the_next() -> None:
    clock = VirtualClock()
    step = SimulatedProcessor("p", latency=1.0, clock=clock)
    pool = ProcessorPool([step], clock=clock)
    first = asyncio.create_task(pool.call({"request": "first"}))
    second = asyncio.create_task(pool.call({"request": "second"}))
    await clock.advance(0.5)
    first.cancel()
    await clock.advance(1.0)
    assert second.done() and second.result()["response"]["request"] == "second"
    assert step.handled == ["second"]
    assert first.cancelled()


class CancelOnGrant(RoundRobin):
    """Cancels a caller just after its request is granted, before the caller runs again."""

    def __init__(self, victims: dict[Any, asyncio.Task[Any]], *, at_once: bool = False) -> None:
        super().__init__()
        self.victims = victims
        self.at_once = at_once

    def choose(self, candidates: Sequence[Processor], request: Request | None = None) -> Processor:
        victim = self.victims.pop(request.inputs["request"], None) if request is not None else None
        if victim is not None:
            if self.at_once:
                victim.cancel()
            else:
                asyncio.get_running_loop().call_soon(victim.cancel)
        return super().choose(candidates, request)


async def test_a_caller_cancelled_just_as_it_was_granted_gives_the_processor_back() -> None:
    for at_once in (False, True):
        clock = VirtualClock()
        step = SimulatedProcessor("p", latency=1.0, clock=clock)
        victims: dict[Any, asyncio.Task[Any]] = {}
        pool = ProcessorPool([step], clock=clock, balancer=CancelOnGrant(victims, at_once=at_once))
        first = asyncio.create_task(pool.call({"request": "first"}))
        await settle()
        granted_then_cancelled = asyncio.create_task(pool.call({"request": "victim"}))
        victims["victim"] = granted_then_cancelled
        third = asyncio.create_task(pool.call({"request": "third"}))
        await clock.advance(1.0)
        await clock.advance(1.0)
        assert granted_then_cancelled.cancelled()
        assert third.done() and third.result()["response"]["request"] == "third"
        assert step.handled == ["first", "third"]
        assert pool.in_flight == 0 and pool["p"].in_flight == 0
        assert first.done()
