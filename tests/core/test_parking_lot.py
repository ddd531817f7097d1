"""The parking lot: first come first served, and cancellation never loses or duplicates a wake-up."""

from __future__ import annotations

import asyncio

import pytest

from nanobrain.core.data_units import StreamUnit
from nanobrain.core.parking_lot import ParkingLot


async def settle(rounds: int = 10) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_tasks_wake_in_the_order_they_parked() -> None:
    lot: ParkingLot[None] = ParkingLot()
    woken: list[int] = []

    async def wait(n: int) -> None:
        await lot.park()
        woken.append(n)

    tasks = [asyncio.create_task(wait(n)) for n in range(5)]
    await settle()
    assert len(lot) == 5
    for _ in range(5):
        assert lot.unpark() is True
        await settle()
    assert woken == [0, 1, 2, 3, 4]
    assert lot.unpark() is False and not lot
    await asyncio.gather(*tasks)


async def test_a_task_cancelled_while_parked_leaves_the_line() -> None:
    lot: ParkingLot[str] = ParkingLot()
    first = asyncio.create_task(lot.park("first"))
    second = asyncio.create_task(lot.park("second"))
    await settle()
    first.cancel()
    # Before the cancelled task has even run again, it no longer counts and is never woken.
    assert len(lot) == 1 and list(lot.items()) == ["second"]
    assert lot.hand_over() == "second"
    await settle()
    assert first.cancelled() and second.done() and not second.cancelled()
    assert not lot


async def test_a_cancelled_task_passes_on_a_wake_up_it_received() -> None:
    lot: ParkingLot[None] = ParkingLot()
    first = asyncio.create_task(lot.park())
    second = asyncio.create_task(lot.park())
    await settle()
    assert lot.unpark()  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs: `second` must get the wake-up
    await settle()
    assert first.cancelled()
    assert second.done() and not second.cancelled()
    assert not lot


async def test_a_handed_over_item_is_not_handed_over_twice() -> None:
    lot: ParkingLot[str] = ParkingLot()
    first = asyncio.create_task(lot.park("a"))
    second = asyncio.create_task(lot.park("b"))
    await settle()
    assert lot.hand_over() == "a"
    first.cancel()  # too late: its item was taken; the cancel still reaches the task
    await settle()
    assert first.cancelled()
    assert not second.done() and list(lot.items()) == ["b"]  # nobody woke `b` for nothing
    assert lot.hand_over() == "b"
    await second


async def test_hand_over_and_unpark_all_on_an_empty_lot() -> None:
    lot: ParkingLot[int] = ParkingLot()
    with pytest.raises(LookupError):
        lot.hand_over()
    tasks = [asyncio.create_task(lot.park(n)) for n in range(3)]
    await settle()
    assert lot.unpark_all() == 3
    await asyncio.gather(*tasks)


async def test_a_stream_reader_cancelled_after_its_wake_up_does_not_strand_the_item() -> None:
    stream = StreamUnit("s", maxsize=4)
    cancelled = asyncio.create_task(stream.next())
    reader = asyncio.create_task(stream.next())
    await settle()
    await stream.set("item")  # wakes the first reader ...
    cancelled.cancel()  # ... which is cancelled before it takes the item
    assert await asyncio.wait_for(reader, 1) == "item"
    assert cancelled.cancelled()
