"""Circuit breakers: stop sending work to a processor that keeps failing, then probe it.

Closed: calls pass; their outcomes fill a sliding time window. When the window holds at least
`min_calls` outcomes and the share of failures reaches `failure_rate` (or `consecutive_failures`
fail in a row), the breaker opens. Open: calls are refused until `cool_down` has passed. Half-open:
up to `probes` trial calls pass; if they all succeed the breaker closes, if one fails it opens
again.

Every call gets a ticket when it starts; an outcome only counts for the state it started in, so a
slow call that began before the breaker opened cannot close it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ...core.clock import Clock, RealClock
from ...core.policy import POLICY_CONFIG, check_bounds, option
from ...core.retry import is_retryable
from .errors import CircuitOpen
from .events import EventEmitter, EventHook

if TYPE_CHECKING:
    from .shared_breaker import RedisBreakerState

T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    """When a breaker opens, how long it stays open, and how it closes again."""

    __pydantic_config__: ClassVar[dict[str, Any]] = POLICY_CONFIG

    failure_rate: float = option(0.5, "Share of failed calls in the window that opens it", gt=0, le=1)
    window: float = option(30.0, "Seconds of outcomes considered", gt=0)
    min_calls: int = option(5, "Calls in the window before the rate counts", ge=1)
    consecutive_failures: int | None = option(None, "Also open after this many failures in a row", ge=1)
    cool_down: float = option(10.0, "Seconds open before a probe is let through", ge=0)
    probes: int = option(1, "Trial calls in half-open state; all must succeed to close", ge=1)

    def __post_init__(self) -> None:
        check_bounds(self)


class CircuitBreaker:
    """A breaker for one processor (or any async call: `await breaker.call(fn)`)."""

    def __init__(
        self,
        name: str = "breaker",
        policy: BreakerPolicy | None = None,
        *,
        clock: Clock | None = None,
        on_event: EventHook | None = None,
        events: EventEmitter | None = None,
        is_failure: Callable[[BaseException], bool] = is_retryable,
        shared: RedisBreakerState | None = None,
        shared_key: str | None = None,
    ) -> None:
        self.name = name
        #: Where other processes' breakers with the same `shared_key` (default: the name) say they opened,
        #: and learn that this one did.
        self.shared = shared
        self.shared_key = shared_key or name
        self.policy = policy or BreakerPolicy()
        self.clock: Clock = clock or RealClock()
        self.events = events or EventEmitter(name, clock=self.clock, on_event=on_event)
        self.is_failure = is_failure
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._window: deque[tuple[float, bool]] = deque()
        self._failures = 0
        self._streak = 0
        self._opened_at = 0.0
        self._probes_out = 0
        self._probe_successes = 0
        #: How many times the breaker opened.
        self.trips = 0

    # -- state -------------------------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker becomes half-open once its cool-down has passed)."""
        if self._state is BreakerState.OPEN:
            self._maybe_half_open(self.clock.now())
        return self._state

    @property
    def retry_at(self) -> float | None:
        """When an open breaker lets a probe through, or None when it is not open."""
        if self._state is BreakerState.OPEN:
            return self._opened_at + self.policy.cool_down
        return None

    def allows(self, now: float | None = None) -> bool:
        """Whether a call may start now (no side effect other than the open -> half-open change)."""
        state = self._state
        if state is BreakerState.CLOSED:
            if self.shared is None or not self._opened_elsewhere():
                return True
            state = self._state
        if state is BreakerState.OPEN and not self._maybe_half_open(self.clock.now() if now is None else now):
            return False
        return self._probes_out < self.policy.probes

    def acquire(self, now: float | None = None) -> int | None:
        """Start a call: returns its ticket, or None when the breaker refuses it."""
        if not self.allows(now):
            return None
        if self._state is BreakerState.HALF_OPEN:
            self._probes_out += 1
        return self._generation

    def record_success(self, ticket: int) -> None:
        if ticket != self._generation:
            return
        if self._state is BreakerState.HALF_OPEN:
            self._probes_out -= 1
            self._probe_successes += 1
            if self._probe_successes >= self.policy.probes:
                self._close()
            return
        self._streak = 0
        self._add(False)
        self._check_rate()

    def record_failure(self, ticket: int, error: BaseException | None = None) -> None:
        if ticket != self._generation:
            return
        if self._state is BreakerState.HALF_OPEN:
            self._probes_out -= 1
            self._open(f"probe failed: {_describe(error)}")
            return
        self._streak += 1
        self._add(True)
        limit = self.policy.consecutive_failures
        if not self._check_rate() and limit is not None and self._streak >= limit:
            self._open(f"{self._streak} failures in a row")

    def record(self, ticket: int, error: BaseException | None) -> None:
        """Record an outcome: success when `error` is None; errors that do not count as failures
        (see `is_failure`, e.g. a bad request) only give a half-open probe back."""
        if error is None:
            self.record_success(ticket)
        elif self.is_failure(error):
            self.record_failure(ticket, error)
        else:
            self.release(ticket)

    def release(self, ticket: int) -> None:
        """A call ended without telling anything about the processor (cancelled, caller's error)."""
        if ticket == self._generation and self._state is BreakerState.HALF_OPEN:
            self._probes_out -= 1

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Call `fn()` through the breaker; raises `CircuitOpen` when it refuses."""
        ticket = self.acquire()
        if ticket is None:
            raise CircuitOpen(self.name, self.retry_at)
        try:
            result = await fn()
        except BaseException as exc:
            if isinstance(exc, Exception):
                self.record(ticket, exc)
            else:
                self.release(ticket)
            raise
        self.record_success(ticket)
        return result

    def reset(self) -> None:
        """Close the breaker and forget its history."""
        if self._state is not BreakerState.CLOSED:
            self._close()
        self._window.clear()
        self._failures = self._streak = 0

    # -- transitions ---------------------------------------------------------------------------
    def _add(self, failed: bool) -> None:
        now = self.clock.now()
        window = self._window
        window.append((now, failed))
        if failed:
            self._failures += 1
        horizon = now - self.policy.window
        while window and window[0][0] <= horizon:
            if window.popleft()[1]:
                self._failures -= 1

    def _check_rate(self) -> bool:
        policy = self.policy
        calls = len(self._window)
        if calls >= policy.min_calls and self._failures > 0 and self._failures >= policy.failure_rate * calls:
            self._open(f"{self._failures} of {calls} calls failed within {policy.window:g}s")
            return True
        return False

    def _opened_elsewhere(self) -> bool:
        """Adopt an opening another process announced: open here until its cool-down ends there."""
        assert self.shared is not None
        until = self.shared.open_until(self.shared_key)
        if until is None:
            return False
        remaining = until - self.shared.now()
        self._open("opened by another process", announce=False)
        self._opened_at = self.clock.now() - max(0.0, self.policy.cool_down - remaining)
        return True

    def _open(self, reason: str, *, announce: bool = True) -> None:
        if announce and self.shared is not None:
            self.shared.opened(self.shared_key, self.policy.cool_down)
        self._state = BreakerState.OPEN
        self._generation += 1
        self._opened_at = self.clock.now()
        self._probes_out = self._probe_successes = 0
        self.trips += 1
        self.events.emit(
            "breaker_opened",
            processor=self.name,
            reason=reason,
            retry_at=self._opened_at + self.policy.cool_down,
            trips=self.trips,
        )

    def _maybe_half_open(self, now: float) -> bool:
        if now < self._opened_at + self.policy.cool_down:
            return False
        self._state = BreakerState.HALF_OPEN
        self._generation += 1
        self._probes_out = self._probe_successes = 0
        self.events.emit("breaker_half_open", processor=self.name)
        return True

    def _close(self) -> None:
        if self.shared is not None:
            self.shared.closed(self.shared_key)
        self._state = BreakerState.CLOSED
        self._generation += 1
        self._window.clear()
        self._failures = self._streak = 0
        self._probes_out = self._probe_successes = 0
        self.events.emit("breaker_closed", processor=self.name)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state.value})"


def _describe(error: BaseException | None) -> str:
    return f"{type(error).__name__}: {error}" if error is not None else "failure"
