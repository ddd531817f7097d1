"""Circuit breakers open on a failure rate within a time window, cool down, probe, and close."""

from __future__ import annotations

import pytest
from tests.infrastructure.parallel.parallel_helpers import Recorder

from nanobrain import VirtualClock
from nanobrain.infrastructure.parallel import BreakerPolicy, BreakerState, CircuitBreaker, CircuitOpen
from nanobrain.llm import BadRequest, ServerError
from nanobrain.testing import InjectedFault


def breaker(clock: VirtualClock, recorder: Recorder | None = None, **policy: object) -> CircuitBreaker:
    settings = {"failure_rate": 0.5, "window": 10.0, "min_calls": 4, "cool_down": 5.0, **policy}
    return CircuitBreaker("p1", BreakerPolicy(**settings), clock=clock, on_event=recorder)  # type: ignore[arg-type]


def outcome(b: CircuitBreaker, failed: bool) -> None:
    ticket = b.acquire()
    assert ticket is not None
    b.record(ticket, ServerError("boom") if failed else None)


async def test_opens_when_the_failure_rate_reaches_the_threshold_with_enough_calls() -> None:
    clock, recorder = VirtualClock(), Recorder()
    b = breaker(clock, recorder)
    outcome(b, True)
    outcome(b, True)
    outcome(b, True)
    assert b.state is BreakerState.CLOSED  # 3 calls: fewer than min_calls
    outcome(b, False)
    assert b.state is BreakerState.OPEN  # 3 of 4 failed
    assert b.acquire() is None and not b.allows()
    assert b.retry_at == pytest.approx(5.0)
    assert recorder.names() == ["breaker_opened"]
    assert recorder.events[0].data["processor"] == "p1"
    assert b.trips == 1


async def test_a_healthy_rate_keeps_it_closed() -> None:
    clock = VirtualClock()
    b = breaker(clock)
    for failed in [True, False, False, False, True, False, False, False, False, True]:
        outcome(b, failed)
    assert b.state is BreakerState.CLOSED


async def test_old_outcomes_leave_the_window() -> None:
    clock = VirtualClock()
    b = breaker(clock)
    for _ in range(3):
        outcome(b, True)
    await clock.advance(11)  # those failures are now outside the 10 s window
    for failed in (False, False, False, True):
        outcome(b, failed)
    assert b.state is BreakerState.CLOSED  # 1 of the 4 calls in the window failed


async def test_cool_down_then_one_successful_probe_closes_it() -> None:
    clock, recorder = VirtualClock(), Recorder()
    b = breaker(clock, recorder)
    for _ in range(4):
        outcome(b, True)
    await clock.advance(4.9)
    assert b.state is BreakerState.OPEN
    await clock.advance(0.1)
    assert b.state is BreakerState.HALF_OPEN
    probe = b.acquire()
    assert probe is not None
    assert b.acquire() is None  # one probe at a time
    b.record(probe, None)
    assert b.state is BreakerState.CLOSED
    assert recorder.names() == ["breaker_opened", "breaker_half_open", "breaker_closed"]


async def test_a_failed_probe_opens_it_again_for_another_cool_down() -> None:
    clock = VirtualClock()
    b = breaker(clock)
    for _ in range(4):
        outcome(b, True)
    await clock.advance(5)
    probe = b.acquire()
    assert probe is not None
    await clock.advance(1)
    b.record(probe, ServerError("still down"))
    assert b.state is BreakerState.OPEN
    assert b.retry_at == pytest.approx(11.0)
    assert b.trips == 2


async def test_several_probes_must_all_succeed() -> None:
    clock = VirtualClock()
    b = breaker(clock, probes=2)
    for _ in range(4):
        outcome(b, True)
    await clock.advance(5)
    first, second = b.acquire(), b.acquire()
    assert first is not None and second is not None and b.acquire() is None
    b.record(first, None)
    assert b.state is BreakerState.HALF_OPEN
    b.record(second, None)
    assert b.state is BreakerState.CLOSED


async def test_consecutive_failures_open_it_before_the_rate_would() -> None:
    clock = VirtualClock()
    b = breaker(clock, min_calls=100, consecutive_failures=3)
    outcome(b, True)
    outcome(b, True)
    outcome(b, False)
    outcome(b, True)
    outcome(b, True)
    assert b.state is BreakerState.CLOSED
    outcome(b, True)
    assert b.state is BreakerState.OPEN


async def test_a_call_that_started_before_the_breaker_opened_cannot_close_it() -> None:
    clock = VirtualClock()
    b = breaker(clock)
    slow = b.acquire()
    assert slow is not None
    for _ in range(4):
        outcome(b, True)
    await clock.advance(5)
    assert b.state is BreakerState.HALF_OPEN
    b.record(slow, None)  # a stale success, from before the opening
    assert b.state is BreakerState.HALF_OPEN


async def test_errors_that_are_not_the_processors_fault_do_not_count() -> None:
    clock = VirtualClock()
    b = breaker(clock)
    for _ in range(6):
        ticket = b.acquire()
        assert ticket is not None
        b.record(ticket, BadRequest("your prompt is too long"))
    assert b.state is BreakerState.CLOSED


async def test_a_cancelled_probe_gives_its_turn_back() -> None:
    clock = VirtualClock()
    b = breaker(clock)
    for _ in range(4):
        outcome(b, True)
    await clock.advance(5)
    probe = b.acquire()
    assert probe is not None and b.acquire() is None
    b.release(probe)
    assert b.acquire() is not None


async def test_call_wraps_an_async_function_and_refuses_when_open() -> None:
    clock = VirtualClock()
    b = breaker(clock, min_calls=2)

    async def failing() -> str:
        raise InjectedFault("down")

    async def working() -> str:
        return "ok"

    for _ in range(2):
        with pytest.raises(InjectedFault):
            await b.call(failing)
    with pytest.raises(CircuitOpen) as caught:
        await b.call(working)
    assert caught.value.retry_at == pytest.approx(5.0) and caught.value.retryable
    await clock.advance(5)
    assert await b.call(working) == "ok"
    assert b.state is BreakerState.CLOSED


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="failure_rate"):
        BreakerPolicy(failure_rate=0)
    with pytest.raises(ValueError, match="min_calls"):
        BreakerPolicy(min_calls=0)
