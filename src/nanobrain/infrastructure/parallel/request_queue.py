"""The request queue: bounded, ordered by priority then age, with backpressure and cancellation.

Producers wait in `put` while the queue is full: nothing is ever dropped. Requests leave by
`pop` (highest priority first, oldest first among equals), by `pop_first` (the first
request that can be placed now, for dispatchers that cannot place every request everywhere), or
by `remove` (a caller gave up: cancelled, or its deadline passed).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from ...core.context import StepContext, current_context
from ...core.parking_lot import ParkingLot

T = TypeVar("T")

_sequence = itertools.count()


class Request:
    """One request: its inputs, priority (higher first), deadline and routing state.

    `seq` orders requests of equal priority by age; a retried request keeps it, and so keeps
    its place in line. `context` is the run step that made the request (taken when it is
    created): what happens to the request is reported to that run, whichever task dispatches it.
    """

    __slots__ = (
        "attempt",
        "context",
        "deadline",
        "errors",
        "granted",
        "id",
        "inputs",
        "priority",
        "queued",
        "seq",
        "session",
        "ticket",
        "tried",
    )

    def __init__(
        self,
        inputs: Mapping[str, Any],
        *,
        priority: int = 0,
        deadline: float | None = None,
        session: str | None = None,
    ) -> None:
        self.seq = next(_sequence)
        self.id = self.seq
        self.inputs = inputs
        self.priority = priority
        #: Absolute time on the pool's clock, or None.
        self.deadline = deadline
        self.session = session
        #: Attempts started so far.
        self.attempt = 0
        #: Processors tried so far (a retry goes elsewhere when it can).
        self.tried: list[Any] = []
        #: (processor name, error) of each failed attempt.
        self.errors: list[tuple[str, BaseException]] = []
        #: Resolved with the processor when the request is dispatched.
        self.granted: asyncio.Future[Any] | None = None
        self.queued = False
        self.ticket = 0
        #: The caller's step context (None outside a run): where the request's events go.
        self.context: StepContext | None = current_context()

    def __repr__(self) -> str:
        return f"Request(id={self.id}, priority={self.priority}, attempt={self.attempt})"


class RequestQueue:
    """A bounded priority queue of requests. `maxsize` bounds the requests waiting in it."""

    def __init__(self, maxsize: int = 1000) -> None:
        if maxsize < 1:
            raise ValueError(f"a request queue needs maxsize >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._heap: list[tuple[int, int, Request]] = []
        self._live = 0
        self._dead = 0
        self._putters: ParkingLot[None] = ParkingLot()
        #: The most requests ever waiting at once.
        self.high_water = 0

    def __len__(self) -> int:
        return self._live

    def full(self) -> bool:
        return self._live >= self.maxsize

    @property
    def producers_waiting(self) -> int:
        """Producers blocked in `put` because the queue is full."""
        return len(self._putters)

    def __iter__(self) -> Iterator[Request]:
        """The waiting requests, in the order they would leave."""
        return iter([entry[2] for entry in sorted(self._heap) if entry[2].queued])

    # -- in ------------------------------------------------------------------------------------
    async def put(self, request: Request) -> None:
        """Add a request, waiting while the queue is full (backpressure)."""
        while self._live >= self.maxsize:
            await self._putters.park()
        self._push(request)

    def requeue(self, request: Request) -> None:
        """Put back a request that was already admitted (a retry): it does not wait for room."""
        self._push(request)

    def _push(self, request: Request) -> None:
        request.queued = True
        heapq.heappush(self._heap, (-request.priority, request.seq, request))
        self._live += 1
        if self._live > self.high_water:
            self.high_water = self._live

    # -- out -----------------------------------------------------------------------------------
    def pop(self) -> Request | None:
        """Take the next request, or None when the queue is empty."""
        heap = self._heap
        while heap:
            request = heapq.heappop(heap)[2]
            if request.queued:
                self._taken(request)
                return request
            self._dead -= 1
        return None

    def pop_first(self, place: Callable[[Request], T | None], *, scan: int = 64) -> tuple[Request, T] | None:
        """Take the first request (in order) for which `place(request)` is not None.

        At most `scan` requests are looked at, so that a long run of requests that cannot be
        placed now (say, pinned to a busy processor) costs a bounded amount of work.
        """
        heap = self._heap
        skipped: list[tuple[int, int, Request]] = []
        found: tuple[Request, T] | None = None
        while heap and len(skipped) < scan:
            entry = heapq.heappop(heap)
            request = entry[2]
            if not request.queued:
                self._dead -= 1
                continue
            placed = place(request)
            if placed is not None:
                found = (request, placed)
                break
            skipped.append(entry)
        for entry in skipped:
            heapq.heappush(heap, entry)
        if found is not None:
            self._taken(found[0])
        return found

    def remove(self, request: Request) -> bool:
        """Take a request out (its caller gave up). False when it was not waiting."""
        if not request.queued:
            return False
        request.queued = False
        self._live -= 1
        self._dead += 1
        if self._dead > 64 and self._dead > self._live:
            self._heap = [entry for entry in self._heap if entry[2].queued]
            heapq.heapify(self._heap)
            self._dead = 0
        if self._putters:
            self._putters.unpark()
        return True

    def _taken(self, request: Request) -> None:
        request.queued = False
        self._live -= 1
        if self._putters:
            self._putters.unpark()
