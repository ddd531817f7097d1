"""Dispatch: which waiting request gets which processor, and when.

A request is granted a processor when the pool runs fewer than its `concurrency` requests (the
pool's bulkhead) and some processor can take it: breaker allows, healthy, within rate limits,
a free slot (the processor's bulkhead). Requests are granted in queue order (priority, then
age); one that cannot be placed now (pinned to a busy processor, or a retry waiting for a
processor it has not tried) lets the next one go first.

The dispatcher runs in whichever task frees or asks for capacity; when nothing can be placed
because of time (a breaker cooling down, an empty token bucket) it sets one timer on the clock.
That task may belong to another run than the request's, so placing and granting a request run
in the request's own step context (`Request.context`): the events they cause (`request_retried`,
`session_moved`, a breaker letting a probe through) go to the run that made the request.
"""

from __future__ import annotations

import asyncio
import sys
from collections import OrderedDict
from collections.abc import Callable

from ...core.clock import Clock
from ...core.context import _current
from .balancers import Balancer
from .breaker import BreakerState
from .deadlines import Cancel, call_at
from .errors import PoolClosed
from .events import EventEmitter, ParallelEvent
from .processor import Processor
from .rate_limit import RateLimit, TokenBucket
from .request_queue import Request, RequestQueue

_RESTRICTING = frozenset({"breaker_opened", "breaker_half_open", "processor_unhealthy"})
_RELEASING = frozenset({"breaker_closed", "processor_healthy"})


class Dispatcher:
    def __init__(
        self,
        processors: list[Processor],
        *,
        balancer: Balancer,
        clock: Clock,
        events: EventEmitter,
        queue_size: int,
        concurrency: int | None,
        sticky: bool,
        max_sessions: int,
        pool_rate_limit: RateLimit | None,
        on_drained: Callable[[Processor], None],
    ) -> None:
        self.processors = processors
        self.balancer = balancer
        self.clock = clock
        self.events = events
        self.queue = RequestQueue(queue_size)
        self.limit = concurrency if concurrency is not None else sys.maxsize
        self.sticky = sticky
        self.max_sessions = max_sessions
        self.sessions: OrderedDict[str, Processor] = OrderedDict()
        #: Request id -> the busy processor whose turn it is (paced balancers).
        self.turns: dict[int, Processor] = {}
        self.request_bucket: TokenBucket | None = None
        self.token_bucket: TokenBucket | None = None
        if pool_rate_limit is not None:
            self.request_bucket = pool_rate_limit.request_bucket(clock)
            self.token_bucket = pool_rate_limit.token_bucket(clock)
        self.in_flight = 0
        #: Processors with a free slot (availability aside).
        self.free: dict[Processor, None] = {}
        #: Names of processors that may be unavailable (breaker not closed, unhealthy, rate-limited).
        #: While it is empty, the balancer chooses among all free processors without checking each.
        self.restricted: set[str] = set()
        self.closed = False
        self._on_drained = on_drained
        self._running = False
        self._wake_at: float | None = None
        self._wake_cancel: Cancel | None = None
        events.subscribe(self.on_event)

    # -- asking and giving back ------------------------------------------------------------------
    async def acquire(self, request: Request) -> Processor:
        """Wait until the request is granted a processor (its slot is then taken)."""
        queue = self.queue
        if not len(queue) and self.in_flight < self.limit and self.free:
            now = self.clock.now()
            processor = self.place(request, now)
            if processor is not None:
                self.grant(request, processor, now)
                return processor
        granted = request.granted = asyncio.get_running_loop().create_future()
        if request.attempt == 0:
            await queue.put(request)  # backpressure: waits while the queue is full
        else:
            queue.requeue(request)  # a retry was admitted already
        if self.closed:
            queue.remove(request)
            raise PoolClosed("the pool was closed")
        self.dispatch()
        try:
            processor = await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(granted.result(), request.ticket)  # granted just as it was cancelled
            else:
                queue.remove(request)
                self.turns.pop(request.id, None)
            raise
        assert isinstance(processor, Processor)
        return processor

    def release(
        self, processor: Processor, ticket: int, error: BaseException | None = None, *, outcome: bool = False
    ) -> None:
        """Give a slot back; with `outcome`, tell the breaker how the call went (`error` or None)."""
        processor.in_flight -= 1
        self.in_flight -= 1
        if processor.draining:
            if processor.in_flight == 0 and not processor.removed:
                self._on_drained(processor)
        elif processor.in_flight < processor.concurrency:
            self.free[processor] = None
        breaker = processor.breaker
        if breaker is not None:
            if outcome:
                breaker.record(ticket, error)
            else:
                breaker.release(ticket)
        if len(self.queue):
            self.dispatch()

    # -- placing -------------------------------------------------------------------------------
    def usable(self, now: float) -> list[Processor]:
        """The free processors that may take a request now: all free ones while none is
        `restricted`; none while a pool-wide limit is empty."""
        if self.request_bucket is not None and not self.request_bucket.ready(1.0, now):
            return []
        if self.token_bucket is not None and self.token_bucket.available(now) <= 0:
            return []
        return [p for p in self.free if p.available(now)] if self.restricted else list(self.free)

    def place(
        self, request: Request, now: float, usable: list[Processor] | None = None, checked: bool = False
    ) -> Processor | None:
        """The processor for this request now, or None when it has to wait. `usable` (`checked`:
        with availability checked) is `usable(now)`, the same for one pass over the queue."""
        if usable is None:
            checked = bool(self.restricted)
            usable = self.usable(now)
        if not usable:
            return None  # no request can be placed now
        if self.sticky and request.session is not None:
            pinned = self.sessions.get(request.session)
            if pinned is not None and pinned not in request.tried and pinned.keeps_sessions():
                # Sticky: wait for this processor while it is healthy, even when others are free.
                # (A retry goes elsewhere like any other, and takes the session along.)
                return pinned if pinned in self.free and pinned.available(now) else None
        tried = request.tried
        if self.balancer.paced and not tried:
            mine = self.turns.get(request.id)
            if mine is None or not mine.available(now):
                mine = self.balancer.turn([p for p in self.processors if p.available(now)], request)
            if mine is not None:
                if mine in self.free:
                    self.turns.pop(request.id, None)
                    return mine
                self.turns[request.id] = mine  # its turn on a busy processor: wait for it
                return None
            self.turns.pop(request.id, None)
        free = usable
        if tried:
            fresh = [p for p in free if p not in tried]
            if fresh:
                free = fresh
            elif any(p not in tried and p.available(now) for p in self.processors):
                return None  # an untried processor is busy: wait for it rather than go back
        chosen = self.balancer.choose(free, request)
        if checked or chosen.available(now):
            return chosen
        # Its state changed without an event (say, `healthy` set directly): check them all from now on.
        self.restricted.add(chosen.name)
        return self.place(request, now)

    # -- which processors may be unavailable -----------------------------------------------------
    def watch(self, processor: Processor) -> None:
        """Note a new processor; processors with rate limits or shared breakers are always checked one by one."""
        if self._always_checked(processor) or not processor.healthy:
            self.restricted.add(processor.name)
        breaker = processor.breaker
        if breaker is not None and breaker.events is not self.events:
            breaker.events.subscribe(self.on_event)

    @staticmethod
    def _always_checked(processor: Processor) -> bool:
        """Rate limits and breakers shared with other processes change without an event here."""
        breaker = processor.breaker
        return (
            processor.request_bucket is not None
            or processor.token_bucket is not None
            or (breaker is not None and breaker.shared is not None)
        )

    def on_event(self, event: ParallelEvent) -> None:
        name = event.data.get("processor")
        if not isinstance(name, str):
            return
        if event.name in _RESTRICTING:
            self.restricted.add(name)
        elif event.name in _RELEASING:
            processor = next((p for p in self.processors if p.name == name), None)
            if processor is not None and not self._always_checked(processor):
                breaker = processor.breaker
                if processor.healthy and (breaker is None or breaker._state is BreakerState.CLOSED):
                    self.restricted.discard(name)

    def grant(self, request: Request, processor: Processor, now: float) -> None:
        processor.in_flight += 1
        if processor.in_flight >= processor.concurrency:
            self.free.pop(processor, None)
        self.in_flight += 1
        breaker = processor.breaker
        if breaker is not None:
            ticket = breaker.acquire(now)
            assert ticket is not None, "a processor was chosen although its breaker refuses calls"
            request.ticket = ticket
        if processor.request_bucket is not None:
            processor.request_bucket.try_take(1.0, now)
        if self.request_bucket is not None:
            self.request_bucket.try_take(1.0, now)
        request.attempt += 1
        if request.tried:
            error = request.errors[-1][1] if request.errors else None
            self.events.emit(
                "request_retried",
                request=request.id,
                attempt=request.attempt,
                processor=processor.name,
                previous=request.tried[-1].name,
                error=f"{type(error).__name__}: {error}" if error is not None else None,
            )
        request.tried.append(processor)
        if self.sticky and request.session is not None:
            self._pin(request.session, processor)

    def dispatch(self) -> None:
        """Grant processors to waiting requests while there is room."""
        if self._running:
            return  # called back from an event hook: the running dispatch goes on
        self._running = True
        try:
            queue, clock = self.queue, self.clock
            now = 0.0
            usable: list[Processor] = []
            checked = False

            def place(request: Request) -> Processor | None:
                granted = request.granted
                if granted is None or granted.done():
                    return None  # its caller was cancelled and is about to take it out
                context = request.context
                if context is _current.get():
                    return self.place(request, now, usable, checked)
                token = _current.set(context)  # report to the request's run, not this task's
                try:
                    return self.place(request, now, usable, checked)
                finally:
                    _current.reset(token)

            while len(queue) and self.in_flight < self.limit and self.free:
                now = clock.now()
                checked = bool(self.restricted)
                usable = self.usable(now)
                if not usable:
                    # Only processors that cannot take work (breaker open, rate-limited) have free
                    # slots: no request can be placed, so do not walk the queue asking each one.
                    break
                found = queue.pop_first(place)
                if found is None:
                    break
                request, processor = found
                context = request.context
                token = _current.set(context) if context is not _current.get() else None
                try:
                    self.grant(request, processor, now)
                    granted = request.granted
                    assert granted is not None
                    if granted.done():  # cancelled by code that ran during the grant (a hook, a balancer)
                        self.release(processor, request.ticket)
                    else:
                        granted.set_result(processor)
                finally:
                    if token is not None:
                        _current.reset(token)
            if len(queue) and self.in_flight < self.limit and self.free:
                now = clock.now()
                # Slots are free yet nothing could be placed: perhaps only time will help (a breaker
                # cooling down, an empty bucket). When no slot is free, the next release dispatches.
                self._wake_later(now)
        finally:
            self._running = False

    def _wake_later(self, now: float) -> None:
        """Nothing could be placed: dispatch again when a breaker or rate limit may allow it."""
        times: list[float] = []
        for processor in self.processors:
            at = processor.available_at(now)
            if at is not None and at > now:
                times.append(at)
        for bucket, amount in ((self.request_bucket, 1.0), (self.token_bucket, 1e-6)):
            if bucket is not None and (ready := bucket.ready_at(amount, now)) > now:
                times.append(ready)
        if not times:
            return
        at = min(times)
        if self._wake_cancel is not None and self._wake_at is not None and self._wake_at <= at:
            return
        if self._wake_cancel is not None:
            self._wake_cancel()
        self._wake_at = at
        self._wake_cancel = call_at(self.clock, at, self._on_wake)

    def _on_wake(self) -> None:
        self._wake_at = self._wake_cancel = None
        self.dispatch()

    def _pin(self, session: str, processor: Processor) -> None:
        sessions = self.sessions
        previous = sessions.get(session)
        sessions[session] = processor
        sessions.move_to_end(session)
        if previous is processor:
            return
        if len(sessions) > self.max_sessions:
            sessions.popitem(last=False)
        if previous is not None:
            self.events.emit("session_moved", session=session, processor=processor.name, previous=previous.name)

    def close(self) -> None:
        """Fail the waiting requests with `PoolClosed`; refuse new ones."""
        self.closed = True
        self.turns.clear()
        if self._wake_cancel is not None:
            self._wake_cancel()
            self._wake_cancel = None
        while (request := self.queue.pop()) is not None:
            if request.granted is not None and not request.granted.done():
                request.granted.set_exception(PoolClosed("the pool was closed"))
