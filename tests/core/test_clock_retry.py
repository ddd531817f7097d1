"""Clocks (real and virtual) and the retry policy, with retry waits on a virtual clock."""

from __future__ import annotations

import asyncio

import pytest

from nanobrain import Clock, FunctionStep, RealClock, RetryPolicy, StepError, VirtualClock, Workflow, step
from nanobrain.llm import AuthError, BadRequest


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


# -- clocks ------------------------------------------------------------------------------------


async def test_real_clock_follows_the_event_loop():
    clock: Clock = RealClock()
    loop = asyncio.get_running_loop()
    before = clock.now()
    assert abs(before - loop.time()) < 1.0
    await clock.sleep(0.01)
    assert clock.now() - before >= 0.009


async def test_virtual_clock_only_moves_when_advanced():
    clock = VirtualClock(start=100.0)
    assert clock.now() == 100.0
    sleeper = asyncio.create_task(clock.sleep(5))
    await settle()
    assert clock.sleepers == 1
    assert not sleeper.done()
    await clock.advance(4.999)
    assert not sleeper.done()
    assert clock.now() == pytest.approx(104.999)
    await clock.advance(0.001)
    assert sleeper.done()
    assert clock.now() == pytest.approx(105.0)
    assert clock.sleepers == 0


async def test_virtual_clock_wakes_sleepers_in_deadline_order_at_their_deadline():
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("c", 3.0), ("a", 1.0), ("b", 2.0), ("a2", 1.0))]
    await settle()
    await clock.advance(10.0)
    await asyncio.gather(*tasks)
    assert woke == [("a", 1.0), ("a2", 1.0), ("b", 2.0), ("c", 3.0)]
    assert clock.now() == 10.0


async def test_virtual_clock_lets_woken_tasks_sleep_again_within_one_advance():
    clock = VirtualClock()
    ticks: list[float] = []

    async def ticker() -> None:
        for _ in range(5):
            await clock.sleep(1.0)
            ticks.append(clock.now())

    task = asyncio.create_task(ticker())
    await clock.advance(3.5)
    assert ticks == [1.0, 2.0, 3.0]
    await clock.advance(10)
    await task
    assert ticks == [1.0, 2.0, 3.0, 4.0, 5.0]


async def test_virtual_clock_zero_sleep_yields_and_time_cannot_go_back():
    clock = VirtualClock()
    await asyncio.wait_for(clock.sleep(0), timeout=1)
    await asyncio.wait_for(clock.sleep(-1), timeout=1)
    assert clock.sleepers == 0
    with pytest.raises(ValueError, match=r"backwards"):
        await clock.advance(-1)


async def test_cancelled_sleeper_is_not_counted():
    clock = VirtualClock()
    task = asyncio.create_task(clock.sleep(1))
    await settle()
    assert clock.sleepers == 1
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert clock.sleepers == 0
    await clock.advance(2)  # waking a cancelled sleeper must not fail
    assert clock.now() == 2


# -- retry policy ------------------------------------------------------------------------------


def test_retry_policy_checks_its_settings():
    with pytest.raises(ValueError, match=r"attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match=r"initial must be at least 0"):
        RetryPolicy(initial=-1)
    with pytest.raises(ValueError, match=r"jitter must be at least 0"):
        RetryPolicy(jitter=-0.1)
    policy = RetryPolicy()
    # By default only what `is_retryable` accepts is retried; `retry_on` adds classes.
    assert (policy.attempts, policy.retry_on) == (3, ())


def _validation_error() -> Exception:
    from pydantic import BaseModel, ValidationError

    class Model(BaseModel):
        n: int

    try:
        Model.model_validate({"n": "many"})
    except ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "make",
    [
        lambda: AuthError("bad key"),
        lambda: BadRequest("too long"),
        lambda: KeyError("missing"),
        lambda: TypeError("bad argument"),
        _validation_error,
    ],
)
async def test_a_step_retry_by_default_leaves_auth_bad_request_and_programming_errors_alone(make) -> None:
    calls = 0

    @step(retry=RetryPolicy(attempts=3, initial=0, jitter=0))
    def broken(x: int) -> int:
        nonlocal calls
        calls += 1
        raise make()

    with pytest.raises(StepError) as info:
        await Workflow.sequence(broken, name="w").run(x=1)
    assert calls == 1
    assert type(info.value.__cause__) is type(make())


async def test_retry_on_and_retry_if_add_errors_to_retry() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise LookupError("first")
        if calls == 2:
            raise RuntimeError("second")
        return "ok"

    policy = RetryPolicy(
        attempts=3, initial=0, jitter=0, retry_on=(LookupError,), retry_if=lambda e: "second" in str(e)
    )
    assert await policy.call(flaky) == "ok"
    assert calls == 3


async def test_a_deferring_policy_tries_once_under_an_outer_retry() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    inner = RetryPolicy(attempts=3, initial=0, jitter=0, defer=True)
    outer = RetryPolicy(attempts=2, initial=0, jitter=0)
    with pytest.raises(ConnectionError):
        await outer.call(lambda: inner.call(down))
    assert calls == 2, "the outer policy's attempts, each one call"
    calls = 0
    with pytest.raises(ConnectionError):
        await inner.call(down)
    assert calls == 3, "alone, a deferring policy retries"


async def test_retry_policy_call_waits_on_the_given_sleep_with_exponential_backoff():
    waits: list[float] = []
    calls = 0

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise ConnectionError("later")
        return "ok"

    policy = RetryPolicy(attempts=4, initial=1.0, multiplier=2.0, max_wait=3.0, jitter=0)
    assert await policy.call(flaky, sleep=record) == "ok"
    assert calls == 4
    assert waits == [1.0, 2.0, 3.0], "exponential, capped at max_wait"


async def test_retry_jitter_stays_within_its_bound():
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async def always() -> None:
        raise ConnectionError

    policy = RetryPolicy(attempts=6, initial=1.0, multiplier=1.0, max_wait=10.0, jitter=0.5)
    with pytest.raises(ConnectionError):
        await policy.call(always, sleep=record)
    assert len(waits) == 5
    assert all(1.0 <= w <= 1.5 for w in waits)


async def test_retry_policy_does_not_retry_other_exceptions():
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("no")

    with pytest.raises(KeyError):
        await RetryPolicy(attempts=5, initial=0, jitter=0, retry_on=(ConnectionError,)).call(broken)
    assert calls == 1


async def test_step_retry_waits_follow_the_workflow_clock():
    clock = VirtualClock()
    attempts: list[float] = []

    @step(retry=RetryPolicy(attempts=3, initial=10.0, multiplier=2.0, max_wait=100.0, jitter=0))
    def flaky(x: int) -> int:
        attempts.append(clock.now())
        if len(attempts) < 3:
            raise ConnectionError("service unavailable")
        return x

    wf = Workflow.sequence(flaky, name="w", clock=clock)
    run = asyncio.create_task(wf.run(x=1))
    await settle()
    assert attempts == [0.0]
    await clock.advance(9.9)
    assert attempts == [0.0], "no real time passes, and the virtual wait is not over yet"
    await clock.advance(0.1)
    assert attempts == [0.0, 10.0]
    await clock.advance(20.0)
    assert attempts == [0.0, 10.0, 30.0]
    assert await asyncio.wait_for(run, timeout=5) == {"result": 1}


async def test_step_retry_on_a_virtual_clock_gives_up_with_the_last_error():
    clock = VirtualClock()
    attempts = 0

    @step(retry=RetryPolicy(attempts=2, initial=1.0, jitter=0))
    def down(x: int) -> int:
        nonlocal attempts
        attempts += 1
        raise ConnectionError(f"attempt {attempts}")

    wf = Workflow.sequence(down, name="w", clock=clock)
    run = asyncio.create_task(wf.run(x=1))
    await clock.advance(5.0)
    with pytest.raises(StepError) as info:
        await asyncio.wait_for(run, timeout=5)
    assert attempts == 2
    assert str(info.value.__cause__) == "attempt 2"


async def test_each_retried_attempt_is_a_step_failed_event() -> None:
    calls = 0

    async def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError(f"attempt {calls}")
        return x

    step_ = FunctionStep(flaky, retry=RetryPolicy(attempts=3, initial=0, jitter=0))
    workflow = Workflow.sequence(step_, name="w")
    events = [e async for e in workflow.stream(x=7)]
    failed = [e for e in events if e.type == "step_failed"]
    assert [(e.step, e.attempt, str(e.error)) for e in failed] == [("flaky", 1, "attempt 1"), ("flaky", 2, "attempt 2")]
    assert events[-1].type == "run_finished" and events[-1].outputs == {"result": 7}


async def test_a_nested_workflow_runs_on_its_parents_clock() -> None:
    clock = VirtualClock()
    calls = 0

    async def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("first attempt fails")
        return x

    policy = RetryPolicy(attempts=2, initial=100, max_wait=1000, jitter=0)
    inner = Workflow.sequence(FunctionStep(flaky, retry=policy), name="inner")
    outer = Workflow.sequence(inner, name="outer", clock=clock)
    run = asyncio.ensure_future(outer.run(x=5))
    await clock.advance(99)
    assert not run.done()  # waiting 100 virtual seconds, not real ones
    await clock.advance(1)
    assert await asyncio.wait_for(run, 5) == {"result": 5}
