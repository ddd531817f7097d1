"""Deadlines on any clock: they cancel at their time, nest, and never swallow a real cancellation."""

from __future__ import annotations

import asyncio

import pytest
from tests.infrastructure.parallel.parallel_helpers import settle

from nanobrain import RealClock, VirtualClock
from nanobrain.infrastructure.parallel import Deadline


class Late(Exception):
    pass


class Later(Exception):
    pass


async def test_a_deadline_on_a_virtual_clock_cancels_the_block_at_its_time() -> None:
    clock = VirtualClock()
    reached: list[str] = []

    async def work() -> None:
        async with Deadline(clock, 3.0, Late):
            await clock.sleep(10)
            reached.append("end")

    task = asyncio.create_task(work())
    await clock.advance(2.9)
    assert not task.done()
    await clock.advance(0.1)
    with pytest.raises(Late):
        await task
    assert reached == []


async def test_a_block_that_finishes_in_time_is_untouched() -> None:
    clock = VirtualClock()

    async def work() -> str:
        async with Deadline(clock, 3.0, Late) as deadline:
            await clock.sleep(1)
        assert not deadline.expired
        await clock.sleep(5)  # past the deadline, outside the block
        return "done"

    task = asyncio.create_task(work())
    await clock.advance(10)
    assert await task == "done"


async def test_nested_deadlines_raise_the_one_that_fired() -> None:
    clock = VirtualClock()

    async def work(inner: float, outer: float) -> None:
        async with Deadline(clock, outer, Later), Deadline(clock, inner, Late):
            await clock.sleep(10)

    first = asyncio.create_task(work(1.0, 2.0))
    second = asyncio.create_task(work(2.0, 1.0))
    await clock.advance(3)
    with pytest.raises(Late):
        await first
    with pytest.raises(Later):
        await second


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    clock = VirtualClock()

    async def work() -> None:
        async with Deadline(clock, 5.0, Late):
            await clock.sleep(10)

    task = asyncio.create_task(work())
    await settle()
    task.cancel()
    await settle()
    assert task.cancelled()
    await clock.advance(10)  # its timer was cancelled too: nothing fires later


async def test_no_deadline_and_the_real_clock() -> None:
    async with Deadline(RealClock(), None, Late):
        await asyncio.sleep(0)
    with pytest.raises(Late):
        async with Deadline(RealClock(), asyncio.get_running_loop().time() + 0.01, Late):
            await asyncio.sleep(1)
