"""A line of waiting tasks, woken first come, first served, that cancellation cannot corrupt.

Every place that makes tasks wait for room or for data (stream units, a run's producers blocked
on a busy step, the request queue, persistent stream readers) parks them here, so that:

- `unpark()` wakes the longest-waiting task, which then re-checks what it waited for;
- `hand_over()` wakes it and returns the item it parked with: the waker takes the item over on
  the spot, so no other task can get in between (strict FIFO);
- a task cancelled while parked leaves the line; one cancelled after `unpark()` woke it, before
  it ran, passes the wake-up on, so none is lost; one cancelled after `hand_over()` still raises
  `CancelledError`, but its item was taken.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ParkingLot(Generic[T]):
    """Tasks waiting in line (see the module docstring for the rules)."""

    __slots__ = ("_parked",)

    def __init__(self) -> None:
        # (future, item); the future's result says whether the item was handed over.
        self._parked: deque[tuple[asyncio.Future[bool], T]] = deque()

    def __len__(self) -> int:
        """How many tasks are waiting."""
        return sum(1 for future, _ in self._parked if not future.done())

    def __bool__(self) -> bool:
        # Cheap and exact: only cancelled tasks that have not run yet leave done entries behind.
        parked = self._parked
        while parked and parked[0][0].done():
            parked.popleft()
        return bool(parked)

    def items(self) -> Iterator[T]:
        """The items of the waiting tasks, longest-waiting first."""
        return (item for future, item in self._parked if not future.done())

    async def park(self, item: Any = None) -> None:
        """Wait in line until woken by `unpark` or `hand_over`."""
        entry = (asyncio.get_running_loop().create_future(), item)
        self._parked.append(entry)
        future = entry[0]
        try:
            await future
        except asyncio.CancelledError:
            if not future.done() or future.cancelled():
                if entry in self._parked:  # a waker may have skipped it already
                    self._parked.remove(entry)
            elif not future.result():
                self.unpark()  # woken, but it can no longer act on it: the next one may
            raise

    def _wake(self, handed_over: bool) -> T:
        parked = self._parked
        while parked:
            future, item = parked.popleft()
            if not future.done():
                future.set_result(handed_over)
                return item
        raise LookupError("no task is waiting")

    def unpark(self) -> bool:
        """Wake the longest-waiting task; False when none was waiting."""
        if not self:
            return False
        self._wake(False)
        return True

    def hand_over(self) -> T:
        """Wake the longest-waiting task and take over the item it parked with (LookupError if none)."""
        return self._wake(True)

    def unpark_all(self) -> int:
        """Wake every waiting task; returns how many."""
        woken = 0
        while self.unpark():
            woken += 1
        return woken
