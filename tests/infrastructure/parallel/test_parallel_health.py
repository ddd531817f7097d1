"""Health checks mark processors unhealthy (no traffic) and healthy again; readiness summary."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.infrastructure.parallel.parallel_helpers import Recorder, drive, settle

from nanobrain import VirtualClock
from nanobrain.infrastructure.parallel import HealthChecker, HealthPolicy, Processor, ProcessorPool
from nanobrain.testing import SimulatedProcessor


def pool_of(clock: VirtualClock, count: int, recorder: Recorder | None = None) -> ProcessorPool:
    steps = [SimulatedProcessor(f"p{i}", latency=1.0, clock=clock) for i in range(count)]
    return ProcessorPool(steps, clock=clock, on_event=recorder)


async def test_failed_probes_mark_a_processor_unhealthy_and_good_ones_bring_it_back() -> None:
    clock, recorder = VirtualClock(), Recorder()
    pool = pool_of(clock, 2, recorder)
    down = {"p1"}
    checker = HealthChecker(pool, HealthPolicy(unhealthy_after=2, healthy_after=2), probe=lambda p: p.name not in down)
    assert await checker.check() == {"p0": True, "p1": True}  # one failure is not enough
    assert await checker.check() == {"p0": True, "p1": False}
    (event,) = recorder.of("processor_unhealthy")
    assert event.data["processor"] == "p1" and "false" in event.data["reason"]
    down.clear()
    assert (await checker.check())["p1"] is False
    assert (await checker.check())["p1"] is True
    assert recorder.names("p1") == ["processor_unhealthy", "processor_healthy"]


async def test_an_unhealthy_processor_gets_no_traffic_and_waiting_work_resumes_when_one_recovers() -> None:
    clock = VirtualClock()
    pool = pool_of(clock, 2)
    checker = HealthChecker(pool, HealthPolicy(unhealthy_after=1), probe=lambda p: p.name == "p0")
    await checker.check()
    tasks = [asyncio.create_task(pool.call({"request": i})) for i in range(4)]
    await drive(clock, tasks)
    assert {t.result()["response"]["processor"] for t in tasks} == {"p0"}
    pool.set_healthy("p0", False, "drained for maintenance")
    waiting = asyncio.create_task(pool.call({"request": "w"}))
    await clock.advance(5)
    assert not waiting.done() and len(pool.queue) == 1
    assert pool.readiness()["ready"] is False
    pool.set_healthy("p1", True)
    await drive(clock, [waiting])
    assert waiting.result()["response"]["processor"] == "p1"


async def test_a_probe_that_raises_or_hangs_counts_as_failed() -> None:
    clock, recorder = VirtualClock(), Recorder()
    pool = pool_of(clock, 2, recorder)

    async def probe(processor: Processor) -> bool:
        if processor.name == "p0":
            raise ConnectionError("refused")
        await clock.sleep(100)  # p1 never answers in time
        return True

    checker = HealthChecker(pool, HealthPolicy(unhealthy_after=1, timeout=2.0), probe=probe)
    task = asyncio.create_task(checker.check())
    await drive(clock, [task], step=0.5)
    assert task.result() == {"p0": False, "p1": False}
    assert clock.now() == pytest.approx(2.0, abs=0.5)
    reasons = {e.data["processor"]: e.data["reason"] for e in recorder.of("processor_unhealthy")}
    assert "ConnectionError: refused" in reasons["p0"] and "within 2s" in reasons["p1"]


async def test_the_default_probe_asks_the_steps_own_health_check() -> None:
    clock = VirtualClock()

    class Checked(SimulatedProcessor):
        def __init__(self, name: str, answer: Any) -> None:
            super().__init__(name, clock=clock)
            self.answer = answer

        async def health_check(self) -> Any:
            return self.answer

    pool = ProcessorPool(
        [Checked("yes", True), Checked("no", False), Checked("none", None), SimulatedProcessor("plain", clock=clock)],
        clock=clock,
    )
    checker = HealthChecker(pool, HealthPolicy(unhealthy_after=1))
    assert await checker.check() == {"yes": True, "no": False, "none": True, "plain": True}


async def test_probes_run_every_interval_in_the_background_until_stopped() -> None:
    clock = VirtualClock()
    pool = pool_of(clock, 1)
    probed: list[float] = []

    def probe(processor: Processor) -> bool:
        probed.append(clock.now())
        return True

    checker = HealthChecker(pool, HealthPolicy(interval=10.0), probe=probe)
    async with checker:
        await settle()
        await clock.advance(35)
        assert probed == [0.0, 10.0, 20.0, 30.0]
        assert checker.readiness()["health_rounds"] == 4
    await clock.advance(50)
    assert len(probed) == 4 and not checker.running


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="interval"):
        HealthPolicy(interval=0)
    with pytest.raises(ValueError, match="unhealthy_after"):
        HealthPolicy(unhealthy_after=0)
