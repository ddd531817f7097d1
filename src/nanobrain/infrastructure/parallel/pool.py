"""The processor pool: steps, agents or workflows that serve requests in parallel.

The caller's own task runs its request: it waits in the pool's priority queue until it is
granted a processor (see `dispatch`), calls it, and gives the slot back. So a result can only go
back to the caller that asked, exactly once, and cancelling a caller cancels its request wherever
it is: waiting, running, or backing off before a retry.

Failed attempts are retried by the failover `RetryPolicy` on a processor the request has not tried when one
is available, all within the request's deadline; each attempt may have its own timeout. A request
waits while no processor can take it (all busy, unhealthy, or with open breakers): a deadline
bounds that wait too.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from ...core.clock import Clock, RealClock
from ...core.closing import AsyncClosing
from ...core.context import StepContext, _current, current_context
from ...core.retry import RetryPolicy, is_retryable, outer_retry
from ...core.steps import Step
from .balancers import Balancer, make_balancer
from .breaker import BreakerPolicy, BreakerState, CircuitBreaker
from .deadlines import Deadline
from .dispatch import Dispatcher
from .errors import AttemptTimeout, DeadlineExceeded, NoProcessorAvailable, PoolClosed
from .events import EventEmitter, EventHook
from .processor import Processor
from .rate_limit import RateLimit
from .request_queue import Request, RequestQueue

if TYPE_CHECKING:
    from .shared_breaker import RedisBreakerState

DEFAULT_BREAKER = BreakerPolicy()
DEFAULT_FAILOVER = RetryPolicy()


class RequestOptions(TypedDict, total=False):
    """The options of one request, as keywords: those of `ProcessorPool.call` (see there)."""

    priority: int
    deadline: float | None
    session: str | None


class ProcessorPool(AsyncClosing):
    """Processors that serve requests in parallel, with a queue, a balancer, breakers and retries.

    `concurrency` bounds the requests running at once in the whole pool; each processor's own
    bound (its bulkhead) is `processor_concurrency` when given, else its step's `concurrency`. `deadline`
    and `attempt_timeout` are seconds (None: none). `breaker=None` or `failover=None` turn those off.
    `sticky` keeps each session on one processor while that processor is healthy.
    """

    def __init__(
        self,
        processors: Iterable[Step | Processor] = (),
        *,
        name: str = "pool",
        balancer: Balancer | str | None = None,
        breaker: BreakerPolicy | None = DEFAULT_BREAKER,
        failover: RetryPolicy | None = DEFAULT_FAILOVER,
        rate_limit: RateLimit | None = None,
        pool_rate_limit: RateLimit | None = None,
        concurrency: int | None = None,
        processor_concurrency: int | None = None,
        queue_size: int = 1000,
        deadline: float | None = None,
        attempt_timeout: float | None = None,
        sticky: bool = False,
        max_sessions: int = 10_000,
        latency_alpha: float = 0.2,
        clock: Clock | None = None,
        on_event: EventHook | None = None,
        shared_breakers: RedisBreakerState | None = None,
    ) -> None:
        for label, value in (("concurrency", concurrency), ("processor_concurrency", processor_concurrency)):
            if value is not None and value < 1:
                raise ValueError(f"pool {name!r}: {label} must be at least 1, got {value}")
        for label, seconds in (("deadline", deadline), ("attempt_timeout", attempt_timeout)):
            if seconds is not None and seconds <= 0:
                raise ValueError(f"pool {name!r}: {label} must be positive, got {seconds}")
        if not 0 < latency_alpha <= 1:
            raise ValueError(f"pool {name!r}: latency_alpha must be in (0, 1], got {latency_alpha}")
        self.name = name
        self.clock: Clock = clock or RealClock()
        self.events = EventEmitter(name, clock=self.clock, on_event=on_event)
        self.breaker = breaker
        #: Breaker state shared with other processes (replicas): a processor open in one is open in all.
        self.shared_breakers = shared_breakers
        self.failover = failover
        self.rate_limit = rate_limit
        self.concurrency = concurrency
        self.processor_concurrency = processor_concurrency
        self.deadline = deadline
        self.attempt_timeout = attempt_timeout
        self.latency_alpha = latency_alpha
        self._processors: list[Processor] = []
        self._dispatcher = Dispatcher(
            self._processors,
            balancer=make_balancer(balancer),
            clock=self.clock,
            events=self.events,
            queue_size=queue_size,
            concurrency=concurrency,
            sticky=sticky,
            max_sessions=max_sessions,
            pool_rate_limit=pool_rate_limit,
            on_drained=self._drop,
        )
        self._indexes = itertools.count()
        self._drained: dict[Processor, asyncio.Future[None]] = {}
        self._announce = False
        for processor in processors:
            self.add(processor)
        self._announce = True

    @property
    def balancer(self) -> Balancer:
        return self._dispatcher.balancer

    @property
    def queue(self) -> RequestQueue:
        return self._dispatcher.queue

    @property
    def sticky(self) -> bool:
        return self._dispatcher.sticky

    @property
    def in_flight(self) -> int:
        """Requests running now."""
        return self._dispatcher.in_flight

    # -- processors ----------------------------------------------------------------------------
    @property
    def processors(self) -> list[Processor]:
        return list(self._processors)

    def __getitem__(self, name: str) -> Processor:
        for processor in self._processors:
            if processor.name == name:
                return processor
        raise KeyError(f"pool {self.name!r} has no processor {name!r}")

    @property
    def size(self) -> int:
        """Processors in service (draining ones not counted)."""
        return sum(1 for p in self._processors if not p.draining)

    def add(
        self, step: Step | Processor, *, name: str | None = None, concurrency: int | None = None, weight: float = 1.0
    ) -> Processor:
        """Add a processor (a step, agent or workflow, or a configured `Processor`)."""
        if isinstance(step, Processor):
            processor = step
        else:
            processor = Processor(step, name=name, concurrency=concurrency or self.processor_concurrency, weight=weight)
        if any(p.name == processor.name for p in self._processors):
            raise ValueError(f"pool {self.name!r} already has a processor named {processor.name!r}")
        processor.index = next(self._indexes)
        if processor.breaker is None and self.breaker is not None:
            processor.breaker = CircuitBreaker(
                processor.name,
                self.breaker,
                clock=self.clock,
                events=self.events,
                is_failure=self._is_failure,
                shared=self.shared_breakers,
                shared_key=f"{self.name}/{processor.name}",
            )
        if processor.rate_limit is None:
            processor.rate_limit = self.rate_limit
        processor.bind(self.clock)
        self._processors.append(processor)
        self._dispatcher.free[processor] = None
        self._dispatcher.watch(processor)
        if self._announce:
            self.events.emit("processor_added", processor=processor.name, size=self.size)
            self._dispatcher.dispatch()
        return processor

    def share_breakers(self, shared: RedisBreakerState) -> None:
        """Share this pool's breakers with other processes (replicas) through `shared`, from now on:
        a processor tripped in one is skipped by all until its cool-down ends. Keys: `pool/processor`."""
        self.shared_breakers = shared
        for processor in self._processors:
            if processor.breaker is not None:
                processor.breaker.shared = shared
                processor.breaker.shared_key = f"{self.name}/{processor.name}"
            self._dispatcher.watch(processor)

    def retire(self, processor: Processor | str) -> Processor:
        """Stop sending requests to a processor; it leaves the pool when its last request is done."""
        if isinstance(processor, str):
            processor = self[processor]
        if not processor.draining:
            processor.draining = True
            self._dispatcher.free.pop(processor, None)
            if processor.in_flight == 0:
                self._drop(processor)
        return processor

    async def remove(self, processor: Processor | str, *, drain: bool = True) -> None:
        """Take a processor out; with `drain`, wait until its requests in flight are done."""
        processor = self.retire(processor)
        if processor.removed:
            return
        if not drain:
            self._drop(processor)
            return
        waiter = self._drained.setdefault(processor, asyncio.get_running_loop().create_future())
        await asyncio.shield(waiter)

    def _drop(self, processor: Processor) -> None:
        processor.removed = True
        self._dispatcher.free.pop(processor, None)
        if processor in self._processors:
            self._processors.remove(processor)
        self._dispatcher.restricted.discard(processor.name)
        waiter = self._drained.pop(processor, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.events.emit("processor_removed", processor=processor.name, size=self.size)
        self._dispatcher.dispatch()

    def set_healthy(self, processor: Processor | str, healthy: bool, reason: str = "") -> None:
        """Mark a processor healthy or not (the health checker does this); emits the change."""
        if isinstance(processor, str):
            processor = self[processor]
        if processor.healthy == healthy:
            return
        processor.healthy = healthy
        name = "processor_healthy" if healthy else "processor_unhealthy"
        self.events.emit(name, processor=processor.name, reason=reason)
        if healthy:
            self._dispatcher.dispatch()

    def session_processor(self, session: str) -> Processor | None:
        """The processor a session is pinned to (sticky pools)."""
        return self._dispatcher.sessions.get(session)

    def readiness(self) -> dict[str, Any]:
        """A summary for a readiness endpoint: ready while at least one processor can serve."""
        serving = sum(
            1
            for p in self._processors
            if p.healthy and not p.draining and (p.breaker is None or p.breaker.state is not BreakerState.OPEN)
        )
        return {
            "pool": self.name,
            "ready": serving > 0 and not self._dispatcher.closed,
            "serving": serving,
            "size": self.size,
            "queued": len(self.queue),
            "in_flight": self.in_flight,
            "processors": [p.snapshot() for p in self._processors],
        }

    # -- requests ------------------------------------------------------------------------------
    async def call(
        self,
        inputs: Mapping[str, Any],
        *,
        priority: int = 0,
        deadline: float | None = None,
        session: str | None = None,
    ) -> Any:
        """Serve one request: returns the outputs of the processor that answered it.

        `priority`: higher goes first. `deadline`: seconds from now for everything (waiting,
        attempts, backoff); default the pool's. `session`: sticky pools keep a session on one
        processor while it is healthy.
        """
        if self._dispatcher.closed:
            raise PoolClosed(f"pool {self.name!r} is closed")
        request = Request(inputs, priority=priority, session=session)
        seconds = self.deadline if deadline is None else deadline
        # The first attempt is made here and retries only when it fails, so that the common case
        # costs no retry machinery (and the retries do not run inside an `except` block).
        if seconds is None:
            try:
                return await self._attempt(request)
            except Exception as exc:
                first = exc
            return await self._retry(request, first)
        request.deadline = self.clock.now() + seconds
        async with Deadline(self.clock, request.deadline, lambda: self._deadline_error(request, seconds)):
            try:
                return await self._attempt(request)
            except Exception as exc:
                first = exc
            return await self._retry(request, first)

    def _deadline_error(self, request: Request, seconds: float) -> DeadlineExceeded:
        last = request.errors[-1][1] if request.errors else None
        error = DeadlineExceeded(self.name, seconds, request.attempt, last)
        error.__cause__ = last
        return error

    async def _retry(self, request: Request, error: Exception) -> Any:
        """The first attempt failed with `error`: retry as the failover policy allows, or re-raise."""
        retry = self.failover
        if retry is None or retry.attempts < 2 or not retry.should_retry(error):
            raise error
        clock, deadline = self.clock, request.deadline
        return await retry.call(
            lambda: self._attempt(request),
            first_error=error,
            sleep=clock.sleep,
            give_up=None if deadline is None else lambda wait: clock.now() + wait >= deadline,
        )

    async def _attempt(self, request: Request) -> Any:
        if not self._processors:
            raise NoProcessorAvailable(f"pool {self.name!r} has no processors")
        dispatcher = self._dispatcher
        processor = await dispatcher.acquire(request)
        clock = self.clock
        started = clock.now()
        ticket = request.ticket
        timeout = self.attempt_timeout
        plain = processor.token_bucket is None and dispatcher.token_bucket is None and current_context() is None
        try:
            if timeout is None:
                result = await (processor.invoke(request.inputs) if plain else self._invoke(processor, request))
            else:
                async with Deadline(clock, started + timeout, lambda: AttemptTimeout(processor.name, timeout)):
                    result = await (processor.invoke(request.inputs) if plain else self._invoke(processor, request))
        except asyncio.CancelledError:
            dispatcher.release(processor, ticket)
            raise
        except BaseException as exc:
            request.errors.append((processor.name, exc))
            processor.observe(clock.now() - started, self._is_failure(exc), self.latency_alpha)
            dispatcher.release(processor, ticket, exc, outcome=True)
            raise
        processor.observe(clock.now() - started, False, self.latency_alpha)
        dispatcher.release(processor, ticket, None, outcome=True)
        return result

    async def _invoke(self, processor: Processor, request: Request) -> Any:
        """Call the processor in a context of its own (inside a run, or when tokens are limited)."""
        parent = current_context()
        pool_tokens = self._dispatcher.token_bucket
        # The processor reports under its own name (`.../step/processor`) and its usage is counted
        # on its own, so that token limits are charged to it; the usage then joins the run's.
        if parent is not None:
            context = StepContext(parent.run_id, processor.name, f"{parent.path}/{processor.name}", parent.sink, {})
        else:
            context = StepContext("", processor.name, processor.name, None, {})
        token = _current.set(context)
        # While the pool fails over, a processor's default retries (a provider's) stand down: a
        # failing request costs `attempts` calls, not `attempts` times the provider's. (Set here,
        # with the run's context, rather than for every request: setting a context variable in
        # a task costs microseconds, and outside runs the pool's fast path stays fast.)
        failover = self.failover
        retrying = outer_retry.set(True) if failover is not None and failover.attempts > 1 else None
        try:
            return await processor.invoke(request.inputs)
        finally:
            if retrying is not None:
                outer_retry.reset(retrying)
            _current.reset(token)
            usage = context.usage
            if usage:
                if parent is not None:
                    parent.add_usage(**usage)
                used = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
                processor.tokens_used += used
                now = self.clock.now()
                for bucket in (processor.token_bucket, pool_tokens):
                    if bucket is not None:
                        bucket.charge(used, now)

    def _is_failure(self, error: BaseException) -> bool:
        """Errors that count against a processor: the retryable ones (a bad request does not)."""
        return self.failover.should_retry(error) if self.failover is not None else is_retryable(error)

    # -- lifecycle -----------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Refuse new requests and fail the waiting ones with `PoolClosed`."""
        self._dispatcher.close()

    def __repr__(self) -> str:
        return f"ProcessorPool({self.name!r}, size={self.size}, in_flight={self.in_flight}, queued={len(self.queue)})"
