"""A line of waiting tasks, woken first come, first served, that cancellation cannot corrupt.

Every place that makes tasks wait for room or for data (a stream unit's producers and
readers, a run's producers blocked on a full step, the request queue's producers) parks them
here, so the rules below hold everywhere:

- `unpark()` wakes the longest-waiting task; it re-checks whatever it waited for.
- `hand_over()` wakes the longest-waiting task and returns the item it parked with: the waker
  takes the item over on the spot, so no other task can get in between (strict FIFO).
- A task cancelled while parked leaves the line. A task cancelled after `unpark()` woke it
  but before it ran passes the wake-up on to the next one, so a wake-up is never lost. A task
  cancelled after `hand_over()` still raises `CancelledError`, but its item was taken.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Parked(Generic[T]):
    __slots__ = ("future", "handed_over", "item")

    def __init__(self, future: asyncio.Future[None], item: T) -> None:
        self.future = future
        self.item = item
        self.handed_over = False


class ParkingLot(Generic[T]):
    """Tasks waiting in line (see the module docstring for the rules)."""

    __slots__ = ("_parked",)

    def __init__(self) -> None:
        self._parked: deque[_Parked[T]] = deque()

    def __len__(self) -> int:
        """How many tasks are waiting."""
        return sum(1 for parked in self._parked if not parked.future.done())

    def __bool__(self) -> bool:
        # Cheap and exact: only cancelled tasks that have not run yet leave done entries behind.
        parked = self._parked
        while parked and parked[0].future.done():
            parked.popleft()
        return bool(parked)

    def items(self) -> Iterator[T]:
        """The items of the waiting tasks, longest-waiting first."""
        return (parked.item for parked in self._parked if not parked.future.done())

    async def park(self, item: Any = None) -> None:
        """Wait in line until woken by `unpark` or `hand_over`."""
        parked = _Parked(asyncio.get_running_loop().create_future(), item)
        self._parked.append(parked)
        try:
            await parked.future
        except asyncio.CancelledError:
            future = parked.future
            if not future.done() or future.cancelled():
                try:
                    self._parked.remove(parked)
                except ValueError:
                    pass  # a waker already skipped it
            elif not parked.handed_over:
                self.unpark()  # woken, but can no longer act on it: the next one may
            raise

    def _next(self) -> _Parked[T] | None:
        parked = self._parked
        while parked:
            first = parked.popleft()
            if not first.future.done():
                return first
        return None

    def unpark(self) -> bool:
        """Wake the longest-waiting task; False when none was waiting."""
        first = self._next()
        if first is None:
            return False
        first.future.set_result(None)
        return True

    def hand_over(self) -> T:
        """Wake the longest-waiting task and take over the item it parked with.

        Raises LookupError when no task is waiting.
        """
        first = self._next()
        if first is None:
            raise LookupError("no task is waiting")
        first.handed_over = True
        first.future.set_result(None)
        return first.item

    def unpark_all(self) -> int:
        """Wake every waiting task; returns how many."""
        woken = 0
        while self.unpark():
            woken += 1
        return woken
