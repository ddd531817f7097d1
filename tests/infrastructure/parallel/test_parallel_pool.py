"""The processor pool: right results to the right callers, priorities, bulkheads, failover,
deadlines, attempt timeouts, traffic shifting away from failing processors. All on a virtual clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from tests.infrastructure.parallel.parallel_helpers import Recorder, drive, settle

from nanobrain import Step, VirtualClock
from nanobrain.core.retry import RetryPolicy
from nanobrain.infrastructure.parallel import (
    AttemptTimeout,
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    DeadlineExceeded,
    NoProcessorAvailable,
    PoolClosed,
    Processor,
    ProcessorPool,
)
from nanobrain.llm import BadRequest
from nanobrain.testing import FaultyStep, InjectedFault, SimulatedProcessor

FAST_RETRY = RetryPolicy(attempts=4, initial=0.1, max_wait=1.0, jitter=0.05, seed=1)


def simulated(clock: VirtualClock, count: int, latency: float = 1.0) -> list[SimulatedProcessor]:
    return [SimulatedProcessor(f"p{i}", latency=latency, clock=clock) for i in range(count)]


def served_by(task: asyncio.Task[Any]) -> str:
    return task.result()["response"]["processor"]


async def test_each_caller_gets_the_answer_to_its_own_request() -> None:
    clock = VirtualClock()
    pool = ProcessorPool(simulated(clock, 3), clock=clock, balancer="least_loaded")
    tasks = [asyncio.create_task(pool.call({"request": i})) for i in range(30)]
    await drive(clock, tasks)
    assert [t.result()["response"]["request"] for t in tasks] == list(range(30))
    assert clock.now() == pytest.approx(10.0, abs=0.1)  # 30 requests, 3 processors, 1 s each
    assert pool.in_flight == 0 and len(pool.queue) == 0


async def test_waiting_requests_are_served_by_priority_then_age() -> None:
    clock = VirtualClock()
    (step,) = simulated(clock, 1)
    pool = ProcessorPool([step], clock=clock)
    first = asyncio.create_task(pool.call({"request": "first"}))
    await settle()
    order = [("low", 0), ("high", 5), ("normal", 1), ("high-2", 5), ("urgent", 9)]
    tasks = []
    for name, priority in order:
        tasks.append(asyncio.create_task(pool.call({"request": name}, priority=priority)))
        await settle()
    assert len(pool.queue) == 5
    await drive(clock, [first, *tasks])
    assert step.handled == ["first", "urgent", "high", "high-2", "normal", "low"]


class Gauge(Step):
    """Counts how many calls run at once, overall and per step."""

    def __init__(self, name: str, clock: VirtualClock, shared: dict[str, int], concurrency: int = 1) -> None:
        super().__init__(name, inputs=["request"], outputs=["response"], concurrency=concurrency)
        self.clock, self.shared = clock, shared
        self.running = self.peak = 0

    async def process(self, inputs: dict[str, Any]) -> dict[str, Any]:
        self.running += 1
        self.shared["now"] += 1
        self.peak = max(self.peak, self.running)
        self.shared["peak"] = max(self.shared["peak"], self.shared["now"])
        try:
            await self.clock.sleep(1.0)
        finally:
            self.running -= 1
            self.shared["now"] -= 1
        return {"response": self.name}


async def test_bulkheads_bound_each_processor_and_the_pool() -> None:
    clock = VirtualClock()
    shared = {"now": 0, "peak": 0}
    gauges = [Gauge(f"g{i}", clock, shared, concurrency=2) for i in range(3)]
    pool = ProcessorPool(gauges, clock=clock, concurrency=5)
    tasks = [asyncio.create_task(pool.call({"request": i})) for i in range(40)]
    await settle()
    assert pool.in_flight == 5 and len(pool.queue) == 35
    await drive(clock, tasks)
    assert shared["peak"] == 5
    assert all(g.peak <= 2 for g in gauges) and max(g.peak for g in gauges) == 2
    assert clock.now() == pytest.approx(8.0, abs=0.1)  # 40 requests, 5 at a time, 1 s each

    # processor_concurrency is the default bulkhead of each processor; without a pool bound it rules.
    shared.update(now=0, peak=0)
    singles = [Gauge(f"s{i}", clock, shared) for i in range(2)]
    pool = ProcessorPool(singles, clock=clock, processor_concurrency=3)
    tasks = [asyncio.create_task(pool.call({"request": i})) for i in range(12)]
    await drive(clock, tasks)
    assert [g.peak for g in singles] == [3, 3] and shared["peak"] == 6


async def test_a_failed_attempt_is_retried_on_another_processor() -> None:
    clock, recorder = VirtualClock(), Recorder()
    steps: list[Step] = list(simulated(clock, 3))
    steps[0] = FaultyStep(steps[0], fail_rate=1.0)
    pool = ProcessorPool(steps, clock=clock, failover=FAST_RETRY, on_event=recorder)
    task = asyncio.create_task(pool.call({"request": "x"}))
    await drive(clock, [task])
    assert served_by(task) == "p1"
    (retried,) = recorder.of("request_retried")
    assert retried.data["previous"] == "p0" and retried.data["processor"] == "p1"
    assert retried.data["attempt"] == 2 and "InjectedFault" in retried.data["error"]


async def test_a_retry_waits_for_an_untried_processor_rather_than_going_back() -> None:
    clock = VirtualClock()
    failing = FaultyStep(SimulatedProcessor("a", clock=clock), fail_rate=1.0)
    working = SimulatedProcessor("b", latency=1.0, clock=clock)
    retry = RetryPolicy(attempts=2, initial=0.01)
    pool = ProcessorPool([failing, working], clock=clock, breaker=None, failover=retry)
    busy = asyncio.create_task(pool.call({"request": "keeps b busy"}))
    await settle()
    task = asyncio.create_task(pool.call({"request": "y"}))
    await drive(clock, [busy, task])
    assert served_by(task) == "b"
    assert failing.calls == 1  # only its first attempt went to the failing processor
    assert clock.now() == pytest.approx(2.0, abs=0.1)  # it waited for b to finish the other request


async def test_errors_that_are_not_retryable_fail_at_once_and_do_not_trip_breakers() -> None:
    clock, recorder = VirtualClock(), Recorder()
    bad = FaultyStep(SimulatedProcessor("p0", clock=clock), fail_rate=1.0, error=lambda: BadRequest("too long"))
    pool = ProcessorPool([bad], clock=clock, on_event=recorder, breaker=BreakerPolicy(min_calls=1))
    for _ in range(3):
        with pytest.raises(BadRequest):
            await pool.call({"request": "x"})
    assert bad.calls == 3
    assert recorder.events == []
    assert pool["p0"].breaker is not None and pool["p0"].breaker.state is BreakerState.CLOSED


async def test_a_user_predicate_makes_more_errors_retryable() -> None:
    clock = VirtualClock()
    flaky = FaultyStep(SimulatedProcessor("p0", clock=clock), fail_rate=1.0, error=lambda: KeyError("cache miss"))
    steps = [flaky, SimulatedProcessor("p1", clock=clock)]
    retry = RetryPolicy(attempts=2, initial=0.0, jitter=0.0, retry_if=lambda e: isinstance(e, KeyError))
    pool = ProcessorPool(steps, clock=clock, failover=retry)
    task = asyncio.create_task(pool.call({"request": 1}))
    await drive(clock, [task])
    assert served_by(task) == "p1"
    unlucky = FaultyStep(SimulatedProcessor("q", clock=clock), fail_rate=1.0, error=lambda: KeyError("x"))
    plain = ProcessorPool([unlucky], clock=clock)
    with pytest.raises(KeyError):
        await plain.call({"request": 1})


async def test_traffic_shifts_away_from_a_failing_processor_and_returns_after_it_recovers() -> None:
    clock, recorder = VirtualClock(), Recorder()
    steps: list[Step] = list(simulated(clock, 4, latency=0.5))
    sick = FaultyStep(steps[0], fail_rate=1.0)
    steps[0] = sick
    pool = ProcessorPool(
        steps,
        clock=clock,
        failover=FAST_RETRY,
        breaker=BreakerPolicy(failure_rate=0.5, min_calls=3, window=10, cool_down=20.0),
        on_event=recorder,
    )

    async def wave(count: int) -> list[asyncio.Task[Any]]:
        tasks = [asyncio.create_task(pool.call({"request": i})) for i in range(count)]
        await drive(clock, tasks)
        return tasks

    first = await wave(40)
    assert all(served_by(t) != "p0" for t in first)  # every request succeeded elsewhere
    assert recorder.names("p0") == ["breaker_opened"]
    assert sick.calls == 3  # three failures in a row opened it
    opened_at = recorder.of("breaker_opened")[0].time
    # While the breaker is open, p0 gets nothing and the others share the traffic.
    second = await wave(40)
    assert clock.now() < opened_at + 20.0
    assert sick.calls == 3
    shares = Counter(served_by(t) for t in second)
    assert set(shares) == {"p1", "p2", "p3"} and min(shares.values()) >= 13
    # It recovers; after the cool-down one probe goes through, succeeds, and traffic returns.
    sick.fail_rate = 0.0
    await clock.advance(opened_at + 20.0 - clock.now())
    third = await wave(40)
    assert recorder.names("p0") == ["breaker_opened", "breaker_half_open", "breaker_closed"]
    assert Counter(served_by(t) for t in third)["p0"] >= 9


async def test_with_a_fifth_of_the_processors_failing_every_request_succeeds_within_its_deadline() -> None:
    clock, recorder = VirtualClock(), Recorder()
    steps: list[Step] = [SimulatedProcessor(f"p{i}", latency=0.2, clock=clock, concurrency=2) for i in range(10)]
    for i in (3, 7):
        steps[i] = FaultyStep(steps[i], fail_rate=1.0, seed=i)
    pool = ProcessorPool(
        steps,
        clock=clock,
        balancer="power_of_two",
        deadline=3.0,
        failover=RetryPolicy(attempts=4, initial=0.05, max_wait=0.5, jitter=0.05, seed=2),
        breaker=BreakerPolicy(min_calls=3, cool_down=2.0),
        on_event=recorder,
    )
    took: dict[int, float] = {}

    async def one(i: int) -> Any:
        started = clock.now()
        result = await pool.call({"request": i})
        took[i] = clock.now() - started
        return result

    tasks = []
    for i in range(300):  # 50 requests a second for 6 s; the 8 working processors serve 80 a second
        tasks.append(asyncio.create_task(one(i)))
        await clock.advance(0.02)
    await drive(clock, tasks, step=0.01)
    assert [t.exception() for t in tasks if t.exception() is not None] == []
    assert {served_by(t) for t in tasks} == {f"p{i}" for i in range(10)} - {"p3", "p7"}
    assert max(took.values()) <= 3.0
    opened = recorder.of("breaker_opened")
    assert {e.data["processor"] for e in opened} == {"p3", "p7"}
    assert len(opened) > 2  # the half-open probes of the failing processors failed and reopened them
    assert recorder.of("request_retried")


async def test_a_deadline_ends_a_request_that_waits_too_long_and_takes_it_out_of_the_queue() -> None:
    clock = VirtualClock()
    (step,) = simulated(clock, 1, latency=10.0)
    pool = ProcessorPool([step], clock=clock)
    busy = asyncio.create_task(pool.call({"request": "long"}))
    await settle()
    late = asyncio.create_task(pool.call({"request": "late"}, deadline=1.0))
    await settle()
    assert len(pool.queue) == 1
    await clock.advance(1.0)
    with pytest.raises(DeadlineExceeded) as caught:
        await late
    assert caught.value.attempts == 0 and "1s" in str(caught.value)
    assert len(pool.queue) == 0
    await drive(clock, [busy])
    assert step.handled == ["long"]


async def test_a_deadline_cancels_a_hanging_processor_and_frees_its_slot() -> None:
    clock = VirtualClock()
    hanging = FaultyStep(SimulatedProcessor("h", clock=clock), hang_rate=1.0)
    pool = ProcessorPool([hanging], clock=clock, deadline=2.0)
    task = asyncio.create_task(pool.call({"request": 1}))
    await drive(clock, [task])
    with pytest.raises(DeadlineExceeded):
        task.result()
    assert clock.now() == pytest.approx(2.0, abs=0.06)
    assert pool["h"].in_flight == 0 and pool.in_flight == 0


async def test_the_deadline_bounds_all_retries() -> None:
    clock = VirtualClock()
    failing = FaultyStep(SimulatedProcessor("f", latency=0.2, clock=clock), fail_rate=1.0)
    retry = RetryPolicy(attempts=10, initial=1.0, multiplier=1.0, jitter=0.0)
    pool = ProcessorPool([failing], clock=clock, breaker=None, failover=retry, deadline=2.5)
    task = asyncio.create_task(pool.call({"request": 1}))
    await drive(clock, [task], step=0.01)
    error = task.exception()
    assert isinstance(error, InjectedFault | DeadlineExceeded)
    assert clock.now() <= 2.5 + 1e-6
    assert 1 < failing.calls < 10  # retried, but not past the deadline


async def test_an_attempt_timeout_moves_a_hung_request_to_another_processor() -> None:
    clock, recorder = VirtualClock(), Recorder()
    hanging = FaultyStep(SimulatedProcessor("h", clock=clock), hang_rate=1.0)
    healthy = SimulatedProcessor("ok", latency=0.5, clock=clock)
    pool = ProcessorPool(
        [hanging, healthy], clock=clock, attempt_timeout=1.0, deadline=5.0, failover=FAST_RETRY, on_event=recorder
    )
    task = asyncio.create_task(pool.call({"request": 1}))
    await drive(clock, [task], step=0.01)
    assert served_by(task) == "ok"
    assert 1.5 <= clock.now() <= 1.8  # 1 s timeout, a short backoff, 0.5 s on the healthy one
    (retried,) = recorder.of("request_retried")
    assert "AttemptTimeout" in retried.data["error"]
    assert pool["h"].failures == 1 and pool["h"].in_flight == 0
    assert isinstance(AttemptTimeout("h", 1.0), TimeoutError)


async def test_a_retired_processor_finishes_its_work_and_gets_no_more() -> None:
    clock, recorder = VirtualClock(), Recorder()
    steps = simulated(clock, 2)
    pool = ProcessorPool(steps, clock=clock, on_event=recorder)
    tasks = [asyncio.create_task(pool.call({"request": i})) for i in range(2)]
    await settle()
    removal = asyncio.create_task(pool.remove("p0"))
    tasks += [asyncio.create_task(pool.call({"request": i})) for i in range(2, 6)]
    await settle()
    assert pool.size == 1 and not removal.done()
    await drive(clock, [*tasks, removal])
    assert steps[0].handled == [0]
    assert steps[1].handled == [1, 2, 3, 4, 5]
    assert [p.name for p in pool.processors] == ["p1"]
    assert recorder.of("processor_removed")[0].data == {"pool": "pool", "processor": "p0", "size": 1}


async def test_a_closed_pool_fails_waiting_requests_and_refuses_new_ones() -> None:
    clock = VirtualClock()
    pool = ProcessorPool(simulated(clock, 1), clock=clock)
    running = asyncio.create_task(pool.call({"request": 1}))
    waiting = asyncio.create_task(pool.call({"request": 2}))
    await settle()
    await pool.aclose()
    with pytest.raises(PoolClosed):
        await waiting
    with pytest.raises(PoolClosed):
        await pool.call({"request": 3})
    await drive(clock, [running])
    assert running.result()["response"]["request"] == 1
    assert pool.readiness()["ready"] is False


async def test_an_empty_pool_says_so() -> None:
    with pytest.raises(NoProcessorAvailable):
        await ProcessorPool([]).call({"request": 1})


async def test_readiness_summarises_the_processors() -> None:
    clock = VirtualClock()
    pool = ProcessorPool(simulated(clock, 2), clock=clock)
    pool.set_healthy("p0", False, "probe failed")
    summary = pool.readiness()
    assert summary["ready"] is True and summary["serving"] == 1 and summary["size"] == 2
    assert [(p["name"], p["healthy"], p["breaker"]) for p in summary["processors"]] == [
        ("p0", False, "closed"),
        ("p1", True, "closed"),
    ]
    pool.set_healthy("p1", False)
    assert pool.readiness()["ready"] is False


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        ProcessorPool([], concurrency=0)
    with pytest.raises(ValueError, match="deadline"):
        ProcessorPool([], deadline=0)
    with pytest.raises(ValueError, match="already has a processor named 'a'"):
        ProcessorPool([SimulatedProcessor("a"), SimulatedProcessor("a")])


async def test_a_processor_whose_state_changes_behind_the_pools_back_still_gets_no_traffic() -> None:
    clock = VirtualClock()
    steps = simulated(clock, 3)
    own = CircuitBreaker("p2", BreakerPolicy(min_calls=1, cool_down=100.0), clock=clock)  # its own events
    pool = ProcessorPool([*steps[:2], Processor(steps[2], breaker=own)], clock=clock)
    pool["p0"].healthy = False  # not through set_healthy: no event
    ticket = own.acquire()
    assert ticket is not None
    own.record_failure(ticket, InjectedFault("down"))
    tasks = [asyncio.create_task(pool.call({"request": i})) for i in range(6)]
    await drive(clock, tasks)
    assert {served_by(t) for t in tasks} == {"p1"}
    # The breaker's cool-down ends and a probe closes it: p2 serves again.
    await clock.advance(100.0 - clock.now())
    tasks = [asyncio.create_task(pool.call({"request": i})) for i in range(6)]
    await drive(clock, tasks)
    assert Counter(served_by(t) for t in tasks) == {"p1": 3, "p2": 3}


async def test_backpressure_holds_the_queue_bound_and_drops_nothing() -> None:
    clock = VirtualClock()
    step = SimulatedProcessor("p", latency=1.0, clock=clock)
    pool = ProcessorPool([step], clock=clock, queue_size=5)
    tasks = [asyncio.create_task(pool.call({"request": i})) for i in range(50)]
    await settle()
    assert pool.in_flight == 1 and len(pool.queue) == 5
    assert pool.queue.producers_waiting == 44  # the others wait to get in
    depths = []
    while not all(t.done() for t in tasks):
        await clock.advance(0.5)
        depths.append(len(pool.queue))
    assert max(depths) == 5 and pool.queue.high_water == 5
    assert sorted(step.handled) == list(range(50))  # every request served once
    assert [t.result()["response"]["request"] for t in tasks] == list(range(50))


async def test_waiting_requests_are_not_each_asked_while_only_open_breakers_have_free_slots() -> None:
    # A processor whose breaker is open keeps a free slot; a release used to make the dispatcher
    # ask every waiting request whether it fits there. With a long queue that is quadratic work
    # on the event loop, enough to make the pool fall behind for good (benchmark F's slow rounds).
    clock = VirtualClock()
    bad = FaultyStep(SimulatedProcessor("bad", clock=clock), fail_rate=1.0)
    ok = SimulatedProcessor("ok", latency=1.0, clock=clock)
    policy = BreakerPolicy(min_calls=1, failure_rate=0.5, cool_down=10_000)
    pool = ProcessorPool([bad, ok], clock=clock, balancer="round_robin", breaker=policy, failover=None)
    with pytest.raises(InjectedFault):
        await pool.call({"request": "trip"})
    breaker = pool["bad"].breaker
    assert breaker is not None and breaker.state is BreakerState.OPEN
    dispatcher = pool._dispatcher
    place = dispatcher.place
    asked = 0

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal asked
        asked += 1
        return place(*args, **kwargs)

    dispatcher.place = counting  # type: ignore[method-assign]
    tasks = [asyncio.create_task(pool.call({"request": i})) for i in range(100)]
    await drive(clock, tasks, step=0.5)
    assert {t.result()["response"]["processor"] for t in tasks} == {"ok"}
    assert asked < 5 * len(tasks), f"{asked} placements asked for {len(tasks)} requests"
