"""Retries of pool requests: exponential backoff with jitter, through tenacity, on the pool's clock.

Only retryable errors are retried (see `is_retryable`, plus whatever `retry_if` accepts). The
pool sends each retry to a processor the request has not tried when there is one, and the
request's deadline bounds all of it: no retry starts whose backoff would end past the deadline.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ...core.clock import Clock
from .errors import is_retryable

T = TypeVar("T")


@dataclass(frozen=True)
class FailoverRetry:
    """Up to `attempts` attempts in all; before attempt n+1 wait `initial * multiplier**(n-1)`
    seconds (at most `max_wait`) plus a random jitter of up to `jitter` seconds."""

    attempts: int = 3
    initial: float = 0.05
    multiplier: float = 2.0
    max_wait: float = 2.0
    jitter: float = 0.05
    #: Also retry errors this predicate accepts (in addition to the retryable ones).
    retry_if: Callable[[BaseException], bool] | None = None
    #: Seed of the jitter (None: unpredictable).
    seed: int | None = None
    _random: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.initial < 0 or self.max_wait < 0 or self.jitter < 0 or self.multiplier < 1:
            raise ValueError("waits must not be negative and the multiplier at least 1")
        object.__setattr__(self, "_random", random.Random(self.seed))

    def should_retry(self, error: BaseException) -> bool:
        if not isinstance(error, Exception):
            return False
        return is_retryable(error) or (self.retry_if is not None and self.retry_if(error))

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        base = min(self.max_wait, self.initial * self.multiplier ** (attempt - 1))
        return base + (self._random.uniform(0, self.jitter) if self.jitter else 0.0)

    async def run(
        self,
        attempt: Callable[[], Awaitable[T]],
        first_error: BaseException,
        *,
        clock: Clock,
        deadline: float | None = None,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> T:
        """Go on after a first attempt failed with `first_error`: retry `attempt()` as allowed."""
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        pending: list[BaseException] = [first_error]

        async def next_attempt() -> T:
            # Tenacity's first attempt replays the failure that already happened, so that its
            # bookkeeping (attempt numbers, waits) covers the whole request.
            if pending:
                raise pending.pop()
            return await attempt()

        def wait(state: Any) -> float:
            return self.backoff(state.attempt_number)

        def past_deadline(state: Any) -> bool:
            return deadline is not None and clock.now() + state.upcoming_sleep >= deadline

        def before_sleep(state: Any) -> None:
            if on_retry is not None and state.outcome is not None:
                on_retry(state.attempt_number, state.outcome.exception(), state.upcoming_sleep)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts) | past_deadline,  # type: ignore[operator]
            wait=wait,
            retry=retry_if_exception(self.should_retry),
            sleep=clock.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        result: T = await retrying(next_attempt)
        return result
