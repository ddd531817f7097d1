"""The request queue: priority then age, a hard bound with waiting producers, cancellation."""

from __future__ import annotations

import asyncio

import pytest
from tests.infrastructure.parallel.parallel_helpers import settle

from nanobrain.infrastructure.parallel import Request, RequestQueue


def requests(*priorities: int) -> list[Request]:
    return [Request({"n": i}, priority=p) for i, p in enumerate(priorities)]


async def test_higher_priority_first_then_oldest_first() -> None:
    queue = RequestQueue(10)
    made = requests(0, 5, 0, 5, -1, 9)
    for request in made:
        await queue.put(request)
    order = [queue.pop() for _ in made]
    assert [r.inputs["n"] for r in order if r] == [5, 1, 3, 0, 2, 4]
    assert queue.pop() is None


async def test_a_requeued_retry_keeps_its_place_by_age() -> None:
    queue = RequestQueue(10)
    first, second, third = requests(0, 0, 0)
    await queue.put(first)
    await queue.put(second)
    assert queue.pop() is first
    await queue.put(third)
    queue.requeue(first)  # a retry: older than the others, so it goes first again
    assert [queue.pop(), queue.pop(), queue.pop()] == [first, second, third]


async def test_producers_wait_while_full_and_nothing_is_dropped() -> None:
    queue = RequestQueue(3)
    sizes: list[int] = []
    produced = requests(*([0] * 20))

    async def producer() -> None:
        for request in produced:
            await queue.put(request)
            sizes.append(len(queue))

    task = asyncio.create_task(producer())
    await settle()
    assert len(queue) == 3 and not task.done()
    assert queue.producers_waiting == 1
    consumed = []
    while len(consumed) < len(produced):
        request = queue.pop()
        assert request is not None  # the producer refilled the queue
        consumed.append(request)
        await settle(3)
    await task
    assert consumed == produced
    assert max(sizes) <= 3 and queue.high_water == 3


async def test_requeue_does_not_wait_for_room() -> None:
    queue = RequestQueue(1)
    a, b = requests(0, 0)
    await queue.put(a)
    assert queue.full()
    queue.requeue(b)
    assert len(queue) == 2


async def test_a_cancelled_producer_leaves_nothing_behind_and_passes_on_its_turn() -> None:
    queue = RequestQueue(1)
    a, b, c = requests(0, 0, 0)
    await queue.put(a)
    blocked_b = asyncio.create_task(queue.put(b))
    blocked_c = asyncio.create_task(queue.put(c))
    await settle()
    blocked_b.cancel()
    assert queue.pop() is a  # room for one: the wake-up b cannot use goes to c
    await settle()
    assert blocked_b.cancelled()
    assert blocked_c.done()
    assert list(queue) == [c]


async def test_removed_requests_are_skipped_and_free_room() -> None:
    queue = RequestQueue(2)
    a, b, c = requests(0, 1, 0)
    await queue.put(a)
    await queue.put(b)
    waiting = asyncio.create_task(queue.put(c))
    await settle()
    assert not waiting.done()
    assert queue.remove(b) is True
    assert queue.remove(b) is False
    await settle()
    assert waiting.done()
    assert [queue.pop(), queue.pop(), queue.pop()] == [a, c, None]


async def test_pop_first_takes_the_first_placeable_request_and_keeps_the_order_of_the_rest() -> None:
    queue = RequestQueue(10)
    made = requests(3, 2, 1, 0)
    for request in made:
        await queue.put(request)
    found = queue.pop_first(lambda r: "ok" if r.inputs["n"] >= 2 else None)
    assert found == (made[2], "ok")
    assert queue.pop_first(lambda r: None) is None
    assert queue.pop_first(lambda r: "late" if r.inputs["n"] == 3 else None, scan=2) is None  # beyond the scan
    assert list(queue) == [made[0], made[1], made[3]]


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        RequestQueue(0)
