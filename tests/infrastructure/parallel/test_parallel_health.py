"""Health checks mark processors unhealthy (no traffic) and healthy again; readiness summary."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tests.infrastructure.parallel.parallel_helpers import Recorder, drive, settle

from nanobrain import VirtualClock, Workflow
from nanobrain.agents.agent import Agent
from nanobrain.infrastructure.parallel import HealthChecker, HealthPolicy, Processor, ProcessorPool
from nanobrain.llm import ScriptedModel
from nanobrain.llm.openai_compat import OpenAICompatibleProvider
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


class _Models(BaseHTTPRequestHandler):
    """GET /v1/models of an OpenAI-compatible server (the cheap call the provider's probe makes)."""

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            self.send_error(404)
            return
        body = json.dumps({"object": "list", "data": [{"id": "tiny", "object": "model", "owned_by": "me"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


async def test_an_agent_on_an_endpoint_that_stops_answering_becomes_unhealthy() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    recorder = Recorder()
    # Both ways users build it: a provider object, and a model string (wrapped for retries).
    direct = Agent("direct", model=OpenAICompatibleProvider("tiny", base_url=url))
    resolved = Agent("resolved", model=f"openai-compatible:tiny@{url}")
    pool = ProcessorPool([direct, resolved], on_event=recorder)
    checker = HealthChecker(pool, HealthPolicy(unhealthy_after=1, timeout=10.0))
    try:
        assert await checker.check() == {"direct": True, "resolved": True}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    try:
        assert await checker.check() == {"direct": False, "resolved": False}
        reasons = [e.data["reason"] for e in recorder.of("processor_unhealthy")]
        assert len(reasons) == 2 and all(f"cannot reach {url}" in r for r in reasons), reasons
    finally:
        await pool.aclose()
        await direct.aclose()
        await resolved.aclose()


async def test_agents_and_workflows_of_agents_answer_the_default_probe_from_their_model() -> None:
    up, down = ScriptedModel(), ScriptedModel()
    down.health = ConnectionRefusedError("refused")
    inner = Agent("inner", model=down)
    pool = ProcessorPool(
        [Agent("up", model=up), Agent("down", model=down), Workflow.sequence(inner, name="flow")],
        clock=VirtualClock(),
    )
    checker = HealthChecker(pool, HealthPolicy(unhealthy_after=1))
    assert await checker.check() == {"up": True, "down": False, "flow": False}
    down.health = True
    assert await checker.check() == {"up": True, "down": True, "flow": True}
