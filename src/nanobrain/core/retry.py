"""Retry policy for steps: exponential backoff with jitter, through tenacity (imported lazily)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Retry a failing call up to `attempts` times in all.

    Waits `initial * multiplier**n` seconds (capped at `max_wait`) plus up to `jitter` seconds
    between attempts. Only exceptions in `retry_on` are retried; others propagate at once.
    """

    attempts: int = 3
    initial: float = 0.1
    multiplier: float = 2.0
    max_wait: float = 10.0
    jitter: float = 0.1
    retry_on: tuple[type[BaseException], ...] = field(default=(Exception,))

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"retry attempts must be at least 1, got {self.attempts}")
        if self.initial < 0 or self.max_wait < 0 or self.jitter < 0:
            raise ValueError("retry waits must not be negative")

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        on_retry: Callable[[int, BaseException], None] | None = None,
    ) -> T:
        """Call `fn()` until it succeeds, a non-retryable error occurs, or attempts run out.

        `on_retry(attempt, error)` is told about each failed attempt that will be retried.
        """
        from tenacity import (
            AsyncRetrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_exponential,
            wait_random,
        )

        options: dict[str, Any] = {}
        if sleep is not None:
            options["sleep"] = sleep
        if on_retry is not None:

            def before_sleep(state: Any) -> None:
                error = state.outcome.exception() if state.outcome is not None else None
                if error is not None:
                    on_retry(state.attempt_number, error)

            options["before_sleep"] = before_sleep
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.initial, exp_base=self.multiplier, max=self.max_wait)
            + wait_random(0, self.jitter),
            retry=retry_if_exception_type(self.retry_on),
            reraise=True,
            **options,
        )

        async def attempt() -> T:
            # tenacity awaits only coroutine functions; `fn` may be a lambda returning an awaitable.
            return await fn()

        return await retrying(attempt)
