"""Retries: one policy (a step's `retry:`, a pool's failover, a provider's retries) and one answer
to "may trying again help?" (`is_retryable`), which circuit breakers share.

Retries do not multiply: a policy with `defer=True` (a provider's default) makes one attempt
when an outer retry is already in charge of the call (a step's `retry:`, a pool's failover).
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from .errors import StepError
from .policy import POLICY_CONFIG, check_bounds, option

T = TypeVar("T")

#: OS errors that mean the network or the peer failed, not the caller (a missing file is not one).
_NETWORK_NAMES = (
    "ECONNREFUSED ECONNRESET ECONNABORTED EPIPE ETIMEDOUT EHOSTUNREACH EHOSTDOWN ENETUNREACH ENETDOWN ENETRESET"
)
_NETWORK_ERRNOS = frozenset(getattr(errno, name) for name in _NETWORK_NAMES.split() if hasattr(errno, name))


def is_retryable(error: BaseException) -> bool:
    """Whether trying again (later, or elsewhere) may help: the one decision behind retries,
    failover and circuit breakers.

    An error says so with a `retryable` attribute (provider and protocol errors, `CircuitOpen`;
    auth and bad-request errors say no). Otherwise timeouts and connection failures
    (`ConnectionError`, DNS errors, socket errors such as "network unreachable") are retryable,
    and everything else is not: a `KeyError`, `TypeError` or validation error is a bug that
    another try would hit too. A step failure inside a nested workflow, and an error raised
    `from` another (a client library wrapping a socket error), is judged by its cause.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        flag = getattr(current, "retryable", None)
        if isinstance(flag, bool):
            return flag
        if isinstance(current, (TimeoutError, ConnectionError, socket.gaierror, socket.herror)):
            return True
        if isinstance(current, OSError) and current.errno in _NETWORK_ERRNOS:
            return True
        if isinstance(current, StepError):
            current = current.error
            continue
        current = current.__cause__
    return False


#: True while a retry loop covers the calls made in this context (deferring policies try once).
outer_retry: ContextVar[bool] = ContextVar("nanobrain_outer_retry", default=False)


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `attempts` attempts in all; before attempt n+1 wait `initial * multiplier**(n-1)`
    seconds (at most `max_wait`) plus a random jitter of up to `jitter` seconds.

    Retried: the errors `is_retryable` accepts, plus those in `retry_on` or accepted by
    `retry_if`. So by default an authentication error, a bad request or a programming error
    (`KeyError`, `TypeError`, a validation error) propagates at once.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = POLICY_CONFIG

    attempts: int = option(3, "Attempts in all (1: no retry)", ge=1)
    initial: float = option(0.05, "Seconds before the first retry", ge=0)
    multiplier: float = option(2.0, "Each wait is this many times the previous one", ge=1)
    max_wait: float = option(2.0, "Longest wait, in seconds", ge=0)
    jitter: float = option(0.05, "Random seconds added to each wait", ge=0)
    retry_on: tuple[type[BaseException], ...] = option((), "More exception classes to retry")
    retry_if: Callable[[BaseException], bool] | None = option(None, "A predicate accepting more errors to retry")
    defer: bool = option(False, "Try once when an outer retry (a step's, a pool's failover) covers the call")
    seed: int | None = option(None, "Seed of the jitter (none: unpredictable)")
    _random: ClassVar[random.Random]  # per instance (seeded), set in __post_init__

    def __post_init__(self) -> None:
        check_bounds(self)
        object.__setattr__(self, "_random", random.Random(self.seed))

    def should_retry(self, error: BaseException) -> bool:
        if not isinstance(error, Exception):
            return False
        return (
            is_retryable(error)
            or isinstance(error, self.retry_on)
            or (self.retry_if is not None and self.retry_if(error))
        )

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        base = min(self.max_wait, self.initial * self.multiplier ** (attempt - 1))
        return base + (self._random.uniform(0, self.jitter) if self.jitter else 0.0)

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        on_retry: Callable[[int, BaseException], None] | None = None,
        first_error: Exception | None = None,
        give_up: Callable[[float], bool] | None = None,
    ) -> T:
        """Call `fn()` until it succeeds, a non-retryable error occurs, or attempts run out; the
        last error propagates.

        `sleep` waits between attempts (default: the event loop's). `on_retry(attempt, error)` is
        told about each failed attempt that will be retried. `first_error`: the first attempt was
        made already and failed so. `give_up(wait)`: stop instead of waiting `wait` seconds (a
        deadline that the wait would pass).
        """
        if self.defer and outer_retry.get():
            if first_error is not None:
                raise first_error
            return await fn()
        token = outer_retry.set(True)
        try:
            attempt = 1
            if first_error is None:
                try:
                    return await fn()
                except Exception as exc:
                    first_error = exc
            error: Exception = first_error
            while True:
                # The retries run outside the `except` blocks, so that errors do not chain.
                if attempt >= self.attempts or not self.should_retry(error):
                    raise error
                wait = self.backoff(attempt)
                if give_up is not None and give_up(wait):
                    raise error
                if on_retry is not None:
                    on_retry(attempt, error)
                await (sleep or asyncio.sleep)(wait)
                attempt += 1
                try:
                    return await fn()
                except Exception as exc:
                    error = exc
        finally:
            outer_retry.reset(token)
