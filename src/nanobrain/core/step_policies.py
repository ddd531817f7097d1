"""A step's policies, wrapped around its `process` in one place and one order.

From the outside in: retry, breaker, rate limit, admission, timeout, `process`. Retry is
outermost, so each attempt passes the breaker and takes a token of its own, and a timed-out
attempt can be retried; the breaker fails fast before a token is spent; the timeout is
innermost, so waiting for a token or for the executor to admit the step's declared resources
does not eat into the step's time. A run and a pool's processor call a step through
the same wrapping. Journaling and tracing are not wrappers: the run journals at step boundaries
and tracing reads the run's event stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .clock import Clock
from .context import _current
from .errors import StepTimeout
from .events import StepFailed
from .resources import admitted

if TYPE_CHECKING:
    from .steps import Step

T = TypeVar("T")

#: How the engine calls a step: inputs in, outputs (or an awaitable of them) out.
Invoke = Callable[[dict[str, Any]], Any]


class Breaker(Protocol):
    """A circuit breaker (`nanobrain.infrastructure.parallel.CircuitBreaker`)."""

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T: ...


class Limiter(Protocol):
    """A rate limit (`nanobrain.infrastructure.parallel.TokenBucket`): `take` waits for room."""

    async def take(self, amount: float = 1.0) -> None: ...


def wrap_invoke(step: Step, clock: Clock | None) -> Invoke:
    """The step's `process` with its policies applied, in the order the module describes."""
    invoke: Invoke = step.process
    if step.timeout is not None:
        invoke = _with_timeout(invoke, step, step.timeout)
    invoke = admitted(step, invoke)
    limiter = step.rate_limit
    if limiter is not None:
        limited = invoke

        async def with_rate_limit(inputs: dict[str, Any]) -> Any:
            await limiter.take()
            return await limited(inputs)

        invoke = with_rate_limit
    breaker = step.breaker
    if breaker is not None:
        guarded = invoke

        def with_breaker(inputs: dict[str, Any]) -> Awaitable[Any]:
            return breaker.call(lambda: guarded(inputs))

        invoke = with_breaker
    policy = step.retry
    if policy is not None:
        retried = invoke

        async def with_retry(inputs: dict[str, Any]) -> Any:
            # The run's clock when there is one (a nested workflow runs on its parent's clock).
            context = _current.get()
            run_clock = context.clock if context is not None and context.clock is not None else clock
            sleep = run_clock.sleep if run_clock is not None else None
            return await policy.call(lambda: retried(inputs), sleep=sleep, on_retry=_report_retry)

        invoke = with_retry
    return invoke


def _with_timeout(inner: Invoke, step: Step, timeout: float) -> Invoke:
    async def with_timeout(inputs: dict[str, Any]) -> Any:
        async with asyncio.timeout(timeout) as scope:
            try:
                result = await inner(inputs)
            except asyncio.CancelledError:
                if scope.expired():
                    raise StepTimeout(step.name, timeout, cancelled=step.cancellable) from None
                raise
        if scope.expired():
            # The step caught the cancel and returned after its deadline: still a timeout.
            raise StepTimeout(step.name, timeout, cancelled=step.cancellable)
        return result

    return with_timeout


def _report_retry(attempt: int, error: BaseException) -> None:
    """A failed attempt that will be retried becomes a `step_failed` event with its attempt number."""
    context = _current.get()
    if context is not None and context.sink is not None:
        context.sink(
            StepFailed(
                context.run_id, context.run_path, step=context.step, error=error, attempt=attempt, firing=context.firing
            )
        )
