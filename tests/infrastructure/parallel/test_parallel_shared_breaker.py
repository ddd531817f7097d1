"""Breaker state shared through a real Redis: opened in one process, open in every other; closed likewise;
a process that starts later sees what is open; an opening ends with its cool-down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from nanobrain.infrastructure.parallel.shared_breaker import RedisBreakerState

pytest.importorskip("redis", reason="Redis needs the `storage` extra")


@pytest.fixture
async def states(redis_url: str) -> AsyncIterator[Callable[[], Any]]:
    """Makes started RedisBreakerState objects, each with a client of its own (as separate processes have)."""
    from nanobrain.interfaces.http.run_bus import open_redis

    made: list[tuple[RedisBreakerState, Any]] = []

    async def make() -> RedisBreakerState:
        client, prefix = open_redis(redis_url)
        state = RedisBreakerState(client, prefix=prefix)
        await state.start()
        made.append((state, client))
        return state

    yield make
    for state, client in made:
        await state.aclose()
        await client.aclose()


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "the other process never saw the change"
        await asyncio.sleep(0.01)


async def test_a_breaker_opened_in_one_process_is_open_in_the_other_until_closed(states: Any) -> None:
    here, there = await states(), await states()
    assert there.open_until("upstream") is None
    here.opened("upstream", 30)
    assert here.open_until("upstream") is not None  # at once where it opened
    await eventually(lambda: there.open_until("upstream") is not None)
    assert there.open_until("upstream") == pytest.approx(time.time() + 30, abs=5)
    assert there.open_until("other") is None

    later = await states()  # started after the opening: reads it from Redis
    assert later.open_until("upstream") is not None

    there.closed("upstream")  # its probes succeeded
    await eventually(lambda: here.open_until("upstream") is None and later.open_until("upstream") is None)


async def test_an_opening_ends_with_its_cool_down_everywhere(states: Any) -> None:
    here, there = await states(), await states()
    here.opened("flaky", 0.3)
    await eventually(lambda: there.open_until("flaky") is not None)
    await asyncio.sleep(0.4)
    assert here.open_until("flaky") is None and there.open_until("flaky") is None
    assert (await states()).open_until("flaky") is None  # its key expired in Redis too


async def test_pools_in_two_processes_share_their_breakers_through_redis(states: Any) -> None:
    """A processor that trips the breaker in one pool is skipped by the other pool at once, without the
    other pool paying for failures of its own; when the first pool's probe succeeds, both use it again."""
    from nanobrain import FunctionStep
    from nanobrain.infrastructure.parallel import BreakerPolicy, BreakerState, ProcessorPool
    from nanobrain.testing import InjectedFault

    down = {"flaky": True}
    calls = {"flaky": 0, "steady": 0}

    def make_pool(shared: RedisBreakerState, *, later: bool = False) -> ProcessorPool:
        async def flaky(x: int) -> int:
            calls["flaky"] += 1
            if down["flaky"]:
                raise InjectedFault("flaky is down")
            return x

        async def steady(x: int) -> int:
            calls["steady"] += 1
            return x

        policy = BreakerPolicy(min_calls=1, failure_rate=1.0, cool_down=0.5)
        steps = [FunctionStep(flaky, "flaky"), FunctionStep(steady, "steady")]
        if not later:
            return ProcessorPool(steps, balancer="round_robin", breaker=policy, shared_breakers=shared)
        pool = ProcessorPool(steps, balancer="round_robin", breaker=policy)
        pool.share_breakers(shared)  # as `nanobrain serve --redis` does for the pools of the workflows it loaded
        return pool

    here, there = make_pool(await states()), make_pool(await states(), later=True)
    async with here, there:
        for x in range(4):  # the failing call fails over to steady; flaky's breaker opens here
            assert await here.call({"x": x}) == {"result": x}
        assert _processor(here, "flaky").breaker.state is BreakerState.OPEN
        await eventually(lambda: there.shared_breakers.open_until("pool/flaky") is not None)

        before = calls["flaky"]
        for x in range(4):  # the other pool never sends work to flaky while it is open anywhere
            assert await there.call({"x": x}) == {"result": x}
        assert calls["flaky"] == before
        assert _processor(there, "flaky").breaker.state is BreakerState.OPEN

        down["flaky"] = False
        await asyncio.sleep(0.6)  # the cool-down: a probe goes through in `here`, succeeds, closes it everywhere
        for x in range(4):
            await here.call({"x": x})
        assert _processor(here, "flaky").breaker.state is BreakerState.CLOSED
        await eventually(lambda: there.shared_breakers.open_until("pool/flaky") is None)


def _processor(pool: Any, name: str) -> Any:
    (processor,) = [p for p in pool.processors if p.name == name]
    return processor
