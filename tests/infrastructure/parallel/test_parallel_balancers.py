"""Balancers are interchangeable strategies; the pool gives them only processors that can serve."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import pytest
from tests.infrastructure.parallel.parallel_helpers import drive

from nanobrain import VirtualClock
from nanobrain.infrastructure.parallel import (
    Balancer,
    FastestResponse,
    LeastLoaded,
    PowerOfTwoChoices,
    Processor,
    ProcessorPool,
    Request,
    RoundRobin,
    Weighted,
    make_balancer,
)
from nanobrain.testing import SimulatedProcessor


def processors(count: int, concurrency: int = 1) -> list[Processor]:
    made = []
    for i in range(count):
        processor = Processor(SimulatedProcessor(f"p{i}"), concurrency=concurrency)
        processor.index = i
        made.append(processor)
    return made


def test_round_robin_takes_turns_and_skips_who_cannot_serve() -> None:
    ps = processors(4)
    rr = RoundRobin()
    assert [rr.choose(ps).name for _ in range(5)] == ["p0", "p1", "p2", "p3", "p0"]
    # p2 is busy: after p1 comes p3, then the turn wraps to the lowest index.
    assert rr.choose([ps[1], ps[3]]).name == "p1"
    assert rr.choose([ps[0], ps[1], ps[3]]).name == "p3"
    assert rr.choose([ps[0], ps[1], ps[3]]).name == "p0"


def test_least_loaded_picks_the_fewest_in_flight_per_slot() -> None:
    ps = processors(3, concurrency=4)
    ps[0].in_flight, ps[1].in_flight, ps[2].in_flight = 3, 1, 2
    assert LeastLoaded().choose(ps).name == "p1"
    ps[1].concurrency = 1  # 1 of 1 slot busy is fuller than 2 of 4
    assert LeastLoaded().choose(ps).name == "p2"


def test_fastest_response_tries_unmeasured_processors_then_prefers_the_fast_one() -> None:
    ps = processors(3, concurrency=10)
    ps[0].latency, ps[1].latency = 0.5, 0.05
    assert FastestResponse().choose(ps).name == "p2"  # never measured
    ps[2].latency = 0.2
    assert FastestResponse().choose(ps).name == "p1"
    ps[1].in_flight = 5  # 0.05 * 1.5 is still below 0.2
    assert FastestResponse().choose(ps).name == "p1"
    ps[1].in_flight = 10  # 0.05 * 2 = 0.1
    ps[2].in_flight = 0
    assert FastestResponse().choose(ps).name == "p1"
    ps[1].latency = 0.15  # 0.15 * 2 = 0.3 > 0.2
    assert FastestResponse().choose(ps).name == "p2"


def test_weighted_is_smooth_and_proportional() -> None:
    ps = processors(2)
    weighted = Weighted({"p0": 3, "p1": 1})
    picks = [weighted.choose(ps).name for _ in range(8)]
    assert picks[:4] == ["p0", "p0", "p1", "p0"]
    assert Counter(picks) == {"p0": 6, "p1": 2}
    ps[1].weight = 2.0  # weights also come from the processors
    by_processor = Weighted()
    assert Counter(by_processor.choose(ps).name for _ in range(9)) == {"p0": 3, "p1": 6}


def test_power_of_two_choices_is_reproducible_from_its_seed_and_prefers_the_less_loaded() -> None:
    ps = processors(8, concurrency=4)
    for i, p in enumerate(ps):
        p.in_flight = i % 4
    a, b = PowerOfTwoChoices(seed=7), PowerOfTwoChoices(seed=7)
    assert [a.choose(ps).name for _ in range(30)] == [b.choose(ps).name for _ in range(30)]
    pair = [ps[1], ps[2]]
    assert all(PowerOfTwoChoices(seed=s).choose(pair) is ps[1] for s in range(20))
    # Over many draws the least loaded processors win far more often than the most loaded.
    p2c = PowerOfTwoChoices(seed=1)
    wins = Counter(p2c.choose(ps).in_flight for _ in range(2000))
    assert wins[0] > wins[1] > wins[2] > wins[3]


def test_balancers_by_name() -> None:
    assert isinstance(make_balancer("least_loaded"), LeastLoaded)
    assert isinstance(make_balancer(None), RoundRobin)
    assert make_balancer("power_of_two", seed=3).seed == 3  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="unknown balancer 'fastest'"):
        make_balancer("fastest")


class LastOne(Balancer):
    """A user's own strategy: always the last candidate."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def choose(self, candidates: Sequence[Processor], request: Request | None = None) -> Processor:
        self.seen.append([p.name for p in candidates])
        return candidates[-1]


async def test_a_custom_balancer_plugs_into_the_pool_and_only_sees_processors_that_can_serve() -> None:
    clock = VirtualClock()
    steps = [SimulatedProcessor(f"p{i}", latency=1.0, clock=clock) for i in range(3)]
    balancer = LastOne()
    pool = ProcessorPool(steps, balancer=balancer, clock=clock)
    pool.set_healthy("p1", False, "maintenance")
    tasks = [asyncio.create_task(pool.call({"request": i})) for i in range(4)]
    await drive(clock, tasks)
    served = [t.result()["response"]["processor"] for t in tasks]
    assert served == ["p2", "p0", "p2", "p0"]
    assert all("p1" not in seen for seen in balancer.seen)
    # While p2 was busy it was not offered either.
    assert ["p0"] in balancer.seen


async def test_weights_hold_when_the_processors_are_saturated() -> None:
    # 50 requests at once for three one-slot processors of equal speed: every slot is always
    # taken, so a balancer that only picks among free processors would split them 17/17/16.
    clock = VirtualClock()
    steps = [SimulatedProcessor(name, latency=1.0, clock=clock) for name in ("a", "b", "c")]
    pool = ProcessorPool(steps, balancer=Weighted({"a": 3, "b": 1, "c": 1}), clock=clock, breaker=None)
    tasks = [asyncio.create_task(pool.call({"request": i})) for i in range(50)]
    await drive(clock, tasks, step=0.5)
    served = Counter(t.result()["response"]["processor"] for t in tasks)
    assert served == {"a": 30, "b": 10, "c": 10}


async def test_a_weighted_pool_does_not_wait_for_a_processor_that_cannot_serve() -> None:
    clock = VirtualClock()
    steps = [SimulatedProcessor(name, latency=1.0, clock=clock) for name in ("a", "b")]
    pool = ProcessorPool(steps, balancer=Weighted({"a": 3, "b": 1}), clock=clock, breaker=None)
    pool.set_healthy("a", False, "maintenance")
    tasks = [asyncio.create_task(pool.call({"request": i})) for i in range(4)]
    await drive(clock, tasks, step=0.5)
    assert {t.result()["response"]["processor"] for t in tasks} == {"b"}


async def test_requests_waiting_for_a_slow_heavy_processor_do_not_hold_up_the_others() -> None:
    clock = VirtualClock()
    steps = [SimulatedProcessor("a", latency=10.0, clock=clock), SimulatedProcessor("b", latency=1.0, clock=clock)]
    pool = ProcessorPool(steps, balancer=Weighted({"a": 3, "b": 1}), clock=clock, breaker=None)
    done: dict[int, float] = {}

    async def call(i: int) -> str:
        response = await pool.call({"request": i})
        done[i] = clock.now()
        return str(response["response"]["processor"])

    tasks = [asyncio.create_task(call(i)) for i in range(8)]
    await drive(clock, tasks, step=0.5)
    served = [t.result() for t in tasks]
    assert Counter(served) == {"a": 6, "b": 2}
    # b's two requests took b's time (1 s each), not a turn behind a's 10-second ones.
    assert sorted(done[i] for i, name in enumerate(served) if name == "b") == [1.0, 2.0]


async def test_equal_weights_never_make_a_request_wait_for_a_busy_processor() -> None:
    clock = VirtualClock()
    steps = [SimulatedProcessor("a", latency=10.0, clock=clock), SimulatedProcessor("b", latency=1.0, clock=clock)]
    pool = ProcessorPool(steps, balancer="weighted", clock=clock, breaker=None)
    tasks = [asyncio.create_task(pool.call({"request": i})) for i in range(4)]
    await drive(clock, tasks, step=0.5)
    assert [t.result()["response"]["processor"] for t in tasks] == ["a", "b", "b", "b"]
