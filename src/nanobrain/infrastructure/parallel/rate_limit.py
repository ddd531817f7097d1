"""Rate limits: token buckets on a clock, for requests and for language-model tokens.

A request bucket is paid before a call (one token per request). A token bucket for language
models is paid after the call with the tokens it actually used, since nobody knows them before;
it may go into debt, and the processor gets no new work until the debt is paid off by time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ...core.clock import Clock, RealClock
from ...core.policy import POLICY_CONFIG, check_bounds, option


class TokenBucket:
    """`rate` tokens per second flow in, up to `capacity` (the burst). Starts full."""

    __slots__ = ("_tokens", "_updated", "capacity", "clock", "rate")

    def __init__(self, rate: float, capacity: float | None = None, *, clock: Clock | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"a token bucket needs a positive rate, got {rate}")
        self.rate = rate
        self.capacity = float(capacity) if capacity is not None else max(1.0, rate)
        if self.capacity <= 0:
            raise ValueError(f"a token bucket needs a positive capacity, got {capacity}")
        self.clock: Clock = clock or RealClock()
        self._tokens = self.capacity
        self._updated: float | None = None

    def _refill(self, now: float) -> float:
        updated = self._updated
        if updated is None:
            self._updated = now
        elif now > updated:
            self._tokens = min(self.capacity, self._tokens + (now - updated) * self.rate)
            self._updated = now
        return self._tokens

    def available(self, now: float | None = None) -> float:
        """Tokens in the bucket now (negative while in debt)."""
        return self._refill(self.clock.now() if now is None else now)

    def ready(self, amount: float = 1.0, now: float | None = None) -> bool:
        """Whether `amount` tokens could be taken now."""
        return self.available(now) >= amount - 1e-9

    def ready_at(self, amount: float = 1.0, now: float | None = None) -> float:
        """When `amount` tokens will be there (now, if they already are)."""
        now = self.clock.now() if now is None else now
        missing = amount - self._refill(now)
        return now if missing <= 1e-9 else now + missing / self.rate

    def try_take(self, amount: float = 1.0, now: float | None = None) -> bool:
        """Take `amount` tokens if they are there."""
        if self.available(now) < amount - 1e-9:
            return False
        self._tokens -= amount
        return True

    def charge(self, amount: float, now: float | None = None) -> None:
        """Take `amount` tokens even if that goes into debt (for costs known only afterwards)."""
        self._refill(self.clock.now() if now is None else now)
        self._tokens -= amount

    async def take(self, amount: float = 1.0) -> None:
        """Wait (on the clock) until `amount` tokens are there, then take them."""
        if amount > self.capacity:
            raise ValueError(f"cannot take {amount} tokens from a bucket of capacity {self.capacity}")
        while not self.try_take(amount):
            now = self.clock.now()
            await self.clock.sleep(self.ready_at(amount, now) - now)

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}/s, capacity={self.capacity:g})"


@dataclass(frozen=True)
class RateLimit:
    """Limits for one processor (or, as `pool_rate_limit`, for a whole pool).

    `requests_per_second` with a `burst` (default: one second's worth); `tokens_per_minute`
    counts the prompt and completion tokens that language-model processors report.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = POLICY_CONFIG

    requests_per_second: float | None = option(None, "Requests let through per second", gt=0)
    burst: float | None = option(None, "Requests allowed at once (default: one second's worth)", gt=0)
    tokens_per_minute: float | None = option(None, "Language-model tokens (prompt + completion)", gt=0)

    def __post_init__(self) -> None:
        check_bounds(self)

    def request_bucket(self, clock: Clock) -> TokenBucket | None:
        if self.requests_per_second is None:
            return None
        return TokenBucket(self.requests_per_second, self.burst, clock=clock)

    def token_bucket(self, clock: Clock) -> TokenBucket | None:
        if self.tokens_per_minute is None:
            return None
        return TokenBucket(self.tokens_per_minute / 60.0, self.tokens_per_minute, clock=clock)
