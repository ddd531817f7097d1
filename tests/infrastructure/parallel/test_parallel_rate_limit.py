"""Token buckets on a virtual clock; request and language-model token limits in a pool."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.infrastructure.parallel.parallel_helpers import drive, settle

from nanobrain import VirtualClock
from nanobrain.agents.agent import Agent
from nanobrain.infrastructure.parallel import ProcessorPool, RateLimit, TokenBucket
from nanobrain.llm import ScriptedModel
from nanobrain.testing import SimulatedProcessor


async def test_a_bucket_starts_full_and_refills_with_time() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(rate=2.0, capacity=3, clock=clock)
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]
    assert bucket.ready_at() == pytest.approx(0.5)
    await clock.advance(0.5)
    assert bucket.try_take() and not bucket.try_take()
    await clock.advance(10)
    assert bucket.available() == pytest.approx(3.0)  # never more than the capacity


async def test_charging_may_go_into_debt_that_time_pays_off() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(rate=1.0, capacity=10, clock=clock)
    bucket.charge(25)
    assert bucket.available() == pytest.approx(-15)
    assert bucket.ready_at(1.0) == pytest.approx(16.0)
    await clock.advance(16)
    assert bucket.ready()


async def test_take_waits_on_the_clock() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(rate=1.0, capacity=1, clock=clock)
    times: list[float] = []

    async def taker() -> None:
        for _ in range(3):
            await bucket.take()
            times.append(clock.now())

    task = asyncio.create_task(taker())
    await drive(clock, [task], step=0.25)
    assert times == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="capacity"):
        await bucket.take(2)


async def test_a_processor_serves_no_faster_than_its_request_rate() -> None:
    clock = VirtualClock()
    step = SimulatedProcessor("p", clock=clock, concurrency=10)
    pool = ProcessorPool([step], clock=clock, rate_limit=RateLimit(requests_per_second=2, burst=1))
    done: list[float] = []

    async def one(i: int) -> None:
        await pool.call({"request": i})
        done.append(clock.now())

    tasks = [asyncio.create_task(one(i)) for i in range(5)]
    await drive(clock, tasks, step=0.05)
    assert done == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


async def test_a_pool_rate_limit_is_shared_by_its_processors() -> None:
    clock = VirtualClock()
    steps = [SimulatedProcessor(f"p{i}", clock=clock) for i in range(3)]
    pool = ProcessorPool(steps, clock=clock, pool_rate_limit=RateLimit(requests_per_second=1, burst=2))
    done: list[float] = []

    async def one(i: int) -> None:
        await pool.call({"request": i})
        done.append(clock.now())

    tasks = [asyncio.create_task(one(i)) for i in range(5)]
    await drive(clock, tasks, step=0.05)
    assert done == pytest.approx([0.0, 0.0, 1.0, 2.0, 3.0])


def words(count: int) -> str:
    return " ".join(["word"] * count)


async def test_a_language_model_processor_over_its_tokens_per_minute_gets_no_work_until_paid_off() -> None:
    clock = VirtualClock()
    verbose = Agent("verbose", model=ScriptedModel(respond=lambda r: words(100)), memory=False)
    terse = Agent("terse", model=ScriptedModel(respond=lambda r: "ok"), memory=False)
    pool = ProcessorPool([verbose, terse], clock=clock, rate_limit=RateLimit(tokens_per_minute=60))
    served: list[tuple[str, float]] = []

    async def ask(i: int) -> Any:
        reply = await pool.call({"message": "hi"})
        served.append((reply["reply"][:4], clock.now()))

    await ask(0)  # verbose: 1 prompt + 100 completion tokens, 41 over the minute's 60
    assert pool["verbose"].tokens_used == 101
    assert pool["verbose"].token_bucket is not None
    assert pool["verbose"].token_bucket.available() == pytest.approx(-41)
    for i in range(3):
        await ask(i)
    assert [who for who, _ in served] == ["word", "ok", "ok", "ok"]  # the terse one took them all
    # After 41 s the debt is paid and the verbose one gets work again.
    await clock.advance(41.5)
    await settle()
    await ask(9)
    await ask(10)
    assert "word" in [who for who, _ in served[-2:]]
