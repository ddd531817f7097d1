"""A processor: one step in a pool, with its bulkhead, breaker, rate limits, health and statistics."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

from ...core.clock import Clock
from ...core.step_policies import wrap_invoke
from ...core.steps import Step
from .breaker import BreakerState, CircuitBreaker
from .rate_limit import RateLimit, TokenBucket


class Processor:
    """A step that serves requests of a pool.

    `concurrency` is its bulkhead: how many requests it works on at once (default: the step's
    own `concurrency`). `weight` is for the weighted balancer. The pool fills in the breaker
    and the rate-limit buckets.
    """

    __slots__ = (
        "_accepts",
        "_invoke",
        "breaker",
        "calls",
        "concurrency",
        "draining",
        "failures",
        "healthy",
        "in_flight",
        "index",
        "latency",
        "name",
        "rate_limit",
        "removed",
        "request_bucket",
        "step",
        "token_bucket",
        "tokens_used",
        "weight",
    )

    def __init__(
        self,
        step: Step,
        *,
        name: str | None = None,
        concurrency: int | None = None,
        weight: float = 1.0,
        breaker: CircuitBreaker | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        if not isinstance(step, Step):
            raise TypeError(f"a processor is a step (or an agent or workflow), got {type(step).__name__}")
        self.step = step
        self.name = name or step.name
        self.concurrency = concurrency if concurrency is not None else step.concurrency
        if self.concurrency < 1:
            raise ValueError(f"processor {self.name!r}: concurrency must be at least 1, got {self.concurrency}")
        if weight <= 0:
            raise ValueError(f"processor {self.name!r}: weight must be positive, got {weight}")
        self.weight = weight
        self.breaker = breaker
        self.rate_limit = rate_limit
        self.request_bucket: TokenBucket | None = None
        self.token_bucket: TokenBucket | None = None
        self.index = -1
        self.in_flight = 0
        self.calls = 0
        self.failures = 0
        self.tokens_used = 0
        #: Moving average of response times (seconds); None until the first response.
        self.latency: float | None = None
        self.healthy = True
        self.draining = False
        self.removed = False
        self._accepts = frozenset(step.inputs)
        self._invoke: Any = None

    def bind(self, clock: Clock) -> None:
        """Prepare the call path (the step's own timeout and retry options apply) and buckets."""
        self._invoke = wrap_invoke(self.step, clock)
        if self.rate_limit is not None:
            self.request_bucket = self.rate_limit.request_bucket(clock)
            self.token_bucket = self.rate_limit.token_bucket(clock)

    def invoke(self, inputs: Mapping[str, Any]) -> Awaitable[Any]:
        """Call the step with the inputs it declares (a copy: a failed attempt cannot spoil a retry)."""
        if self._accepts.issuperset(inputs):
            return self._invoke(dict(inputs))
        return self._invoke({k: v for k, v in inputs.items() if k in self._accepts})

    # -- routing -------------------------------------------------------------------------------
    @property
    def load(self) -> float:
        """Requests in flight per slot."""
        return self.in_flight / self.concurrency

    def available(self, now: float) -> bool:
        """Whether it may take a request now (slots aside): healthy, breaker and limits allow."""
        if not self.healthy or self.draining:
            return False
        breaker = self.breaker
        # A closed breaker allows, unless it shares state with other processes (one may have opened it).
        if (
            breaker is not None
            and (breaker._state is not BreakerState.CLOSED or breaker.shared is not None)
            and not breaker.allows(now)
        ):
            return False
        bucket = self.request_bucket
        if bucket is not None and not bucket.ready(1.0, now):
            return False
        tokens = self.token_bucket
        return tokens is None or tokens.available(now) > 0

    def available_at(self, now: float) -> float | None:
        """When an unavailable processor may become available by time alone (None: not by time)."""
        if not self.healthy or self.draining or self.removed:
            return None
        times = [now]
        breaker = self.breaker
        if breaker is not None and breaker.retry_at is not None:
            times.append(breaker.retry_at)
        if self.request_bucket is not None:
            times.append(self.request_bucket.ready_at(1.0, now))
        if self.token_bucket is not None:
            times.append(self.token_bucket.ready_at(1e-6, now))
        return max(times)

    def keeps_sessions(self) -> bool:
        """Whether sessions stay on it: it is in the pool, healthy, and its breaker is closed."""
        breaker = self.breaker
        return (
            self.healthy
            and not self.draining
            and not self.removed
            and (breaker is None or breaker.state is BreakerState.CLOSED)
        )

    # -- statistics ----------------------------------------------------------------------------
    def observe(self, seconds: float, failed: bool, alpha: float) -> None:
        """Update the moving average. A failure counts as at least twice the average, so that a
        processor failing fast does not look fast."""
        self.calls += 1
        if failed:
            self.failures += 1
            seconds = max(seconds, 2 * (self.latency if self.latency is not None else seconds))
        latency = self.latency
        self.latency = seconds if latency is None else latency + alpha * (seconds - latency)

    def snapshot(self) -> dict[str, Any]:
        breaker = self.breaker
        return {
            "name": self.name,
            "healthy": self.healthy,
            "draining": self.draining,
            "breaker": breaker.state.value if breaker is not None else None,
            "in_flight": self.in_flight,
            "concurrency": self.concurrency,
            "calls": self.calls,
            "failures": self.failures,
            "latency": self.latency,
            "tokens_used": self.tokens_used,
        }

    def __repr__(self) -> str:
        return f"Processor({self.name!r}, in_flight={self.in_flight}/{self.concurrency})"
