"""ParallelStep in workflows: one request per firing or a batch, state changes as run events,
agents with usage, and conversations that stick to one agent while it is healthy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.infrastructure.parallel.parallel_helpers import Recorder, drive, settle

import nanobrain as nb
from nanobrain import Custom, RunFinished, Step, VirtualClock, Workflow
from nanobrain.agents.agent import Agent
from nanobrain.core.retry import RetryPolicy
from nanobrain.infrastructure.parallel import (
    AutoscalePolicy,
    BreakerPolicy,
    HealthPolicy,
    ParallelAgentStep,
    ParallelConversationalAgentStep,
    ParallelStep,
)
from nanobrain.llm import ChatRequest, ScriptedModel, ServerError
from nanobrain.testing import FaultyStep, InjectedFault, SimulatedProcessor

RETRY = RetryPolicy(attempts=3, initial=0.05, jitter=0.0)


def processors(clock: VirtualClock, failing: int | None = None) -> list[Step]:
    steps: list[Step] = [SimulatedProcessor(f"p{i}", latency=1.0, clock=clock) for i in range(3)]
    if failing is not None:
        steps[failing] = FaultyStep(steps[failing], fail_rate=1.0)
    return steps


async def test_a_parallel_step_looks_like_its_processors_and_reports_state_changes_as_run_events() -> None:
    clock = VirtualClock()
    step = ParallelStep(
        "fan", processors(clock, failing=0), clock=clock, failover=RETRY, breaker=BreakerPolicy(min_calls=1)
    )
    assert list(step.inputs) == ["request"] and list(step.outputs) == ["response"]
    workflow = Workflow.sequence(step, name="wf")
    events: list[nb.RunEvent] = []
    run = asyncio.create_task(workflow.invoke({"request": "hello"}, on_event=events.append))
    await drive(clock, [run])
    assert run.result() == {"response": {"processor": "p1", "request": "hello"}}
    custom = [(e.name, e.step, e.data.get("processor")) for e in events if isinstance(e, Custom)]
    assert ("breaker_opened", "fan", "p0") in custom
    assert ("request_retried", "fan", "p1") in custom
    opened = next(e for e in events if isinstance(e, Custom) and e.name == "breaker_opened")
    assert (opened.path, opened.step) == ("wf", "fan") and opened.data["pool"] == "fan"


async def test_concurrent_runs_share_the_pool_and_each_gets_its_own_answer() -> None:
    clock = VirtualClock()
    step = ParallelStep("fan", processors(clock), clock=clock)
    workflow = Workflow.sequence(step, name="wf")
    runs = [asyncio.create_task(workflow.run(request=i)) for i in range(9)]
    await drive(clock, runs)
    assert [r.result()["response"]["request"] for r in runs] == list(range(9))
    assert {r.result()["response"]["processor"] for r in runs} == {"p0", "p1", "p2"}
    assert clock.now() == pytest.approx(3.0, abs=0.1)  # 9 requests over 3 processors of 1 s


async def test_batch_mode_fans_a_list_out_and_keeps_the_order() -> None:
    clock = VirtualClock()
    step = ParallelStep("fan", processors(clock, failing=2), clock=clock, failover=RETRY, batch=True)
    assert list(step.inputs) == ["requests"] and list(step.outputs) == ["results"]
    workflow = Workflow.sequence(step, name="wf")
    run = asyncio.create_task(workflow.run(requests=list("abcdef")))
    await drive(clock, [run])
    results = run.result()["results"]
    assert [r["request"] for r in results] == list("abcdef")
    assert all(r["processor"] in ("p0", "p1") for r in results)


async def test_a_batch_that_cannot_be_served_fails_with_the_requests_own_error() -> None:
    clock = VirtualClock()
    steps = [FaultyStep(SimulatedProcessor(f"p{i}", clock=clock), fail_rate=1.0) for i in range(2)]
    step = ParallelStep("fan", steps, clock=clock, failover=RETRY, breaker=None, batch=True)
    task = asyncio.create_task(step.map(["a", "b"]))
    await drive(clock, [task])
    with pytest.raises(InjectedFault):
        task.result()  # the request's own error, not an exception group
    await settle()
    assert step.pool.in_flight == 0 and len(step.pool.queue) == 0  # the other request was called off


def echo_model(name: str) -> ScriptedModel:
    def respond(request: ChatRequest) -> str:
        return f"{name}: {request.messages[-1].content}"

    return ScriptedModel(respond=respond)


async def test_parallel_agents_answer_and_their_usage_joins_the_run() -> None:
    agents = [Agent(name, model=echo_model(name), memory=False) for name in ("alpha", "beta", "gamma")]
    step = ParallelAgentStep("agents", agents, batch=True, balancer="round_robin")
    workflow = Workflow.sequence(step, name="chat")
    events = [e async for e in workflow.stream(requests=["one", "two", "three", "four"])]
    finished = next(e for e in events if isinstance(e, RunFinished))
    assert finished.outputs == {"results": ["alpha: one", "beta: two", "gamma: three", "alpha: four"]}
    assert finished.usage == {"prompt_tokens": 4, "completion_tokens": 8}
    calls = [e for e in events if isinstance(e, Custom) and e.name == "llm_call"]
    # Like step events, a processor's events carry where it runs (the pool's path) and its name.
    assert sorted((e.path, e.step) for e in calls) == [
        ("chat/agents", "alpha"),
        ("chat/agents", "alpha"),
        ("chat/agents", "beta"),
        ("chat/agents", "gamma"),
    ]


def conversational(recorder: Recorder, alpha: ScriptedModel, beta: ScriptedModel, **options: Any) -> Any:
    agents = [Agent("alpha", model=alpha), Agent("beta", model=beta)]
    return ParallelConversationalAgentStep("chat", agents, on_event=recorder, failover=RETRY, **options)


def counting(name: str) -> ScriptedModel:
    """Answers with its name and how many earlier messages of the conversation it was sent."""
    return ScriptedModel(respond=lambda r: f"{name} saw {len(r.messages) - 1}")


async def test_a_session_sticks_to_one_agent_while_healthy_and_moves_with_its_history_when_not() -> None:
    recorder = Recorder()
    step = conversational(recorder, counting("alpha"), counting("beta"))
    turn = step.submit
    assert await turn({"message": "hi", "session": "s1"}) == {"reply": "alpha saw 0"}
    assert await turn({"message": "hi", "session": "s2"}) == {"reply": "beta saw 0"}
    # Round-robin would alternate; the sessions stay where they started.
    assert await turn({"message": "and?", "session": "s1"}) == {"reply": "alpha saw 2"}
    assert await turn({"message": "and?", "session": "s1"}) == {"reply": "alpha saw 4"}
    assert await turn({"message": "and?", "session": "s2"}) == {"reply": "beta saw 2"}
    assert step.pool.session_processor("s1").name == "alpha"
    # alpha becomes unhealthy: s1 moves to beta, which sees the whole conversation (shared memory).
    step.pool.set_healthy("alpha", False, "probe failed")
    assert await turn({"message": "still there?", "session": "s1"}) == {"reply": "beta saw 6"}
    (moved,) = recorder.of("session_moved")
    assert moved.data == {"pool": "chat", "session": "s1", "processor": "beta", "previous": "alpha"}
    # alpha is back, but s1 now lives on beta (healthy): it stays there.
    step.pool.set_healthy("alpha", True)
    assert await turn({"message": "ok", "session": "s1"}) == {"reply": "beta saw 8"}
    assert len(recorder.of("session_moved")) == 1


async def test_a_session_moves_when_its_agent_starts_failing() -> None:
    recorder = Recorder()
    alpha = counting("alpha")
    step = conversational(recorder, alpha, counting("beta"), breaker=BreakerPolicy(min_calls=1))
    assert await step.submit({"message": "hi", "session": "s1"}) == {"reply": "alpha saw 0"}
    alpha.respond = None
    alpha.add(ServerError("overloaded"))
    assert await step.submit({"message": "again", "session": "s1"}) == {"reply": "beta saw 2"}
    assert recorder.names("alpha") == ["breaker_opened"]
    assert recorder.of("session_moved")[0].data["processor"] == "beta"


async def test_background_health_checks_and_autoscaling_run_from_the_first_request_until_closed() -> None:
    clock, recorder = VirtualClock(), Recorder()
    probes: list[float] = []

    def probe(processor: Any) -> bool:
        probes.append(clock.now())
        return True

    step = ParallelStep(
        "fan",
        [SimulatedProcessor("p", latency=1.0, clock=clock)],
        clock=clock,
        health=HealthPolicy(interval=5.0),
        probe=probe,
        autoscale=AutoscalePolicy(min_size=1, max_size=2, interval=1.0, queue_per_processor=1, cooldown=0),
        on_event=recorder,
    )
    await clock.advance(20)
    assert probes == []  # nothing runs before the first request
    tasks = [asyncio.create_task(step.submit({"request": i})) for i in range(6)]
    await drive(clock, tasks)
    assert probes and step.pool.size == 2
    assert step.readiness()["health_rounds"] >= 1
    await step.aclose()
    count = len(probes)
    await clock.advance(50)
    await settle()
    assert len(probes) == count


def test_processors_must_be_interchangeable() -> None:
    class Other(Step):
        def __init__(self) -> None:
            super().__init__("other", inputs=["request"], outputs=["answer"])

    with pytest.raises(ValueError, match="processors must be interchangeable"):
        ParallelStep("fan", [SimulatedProcessor("a"), Other()])
    with pytest.raises(ValueError, match="at least one processor"):
        ParallelStep("fan", [])
    with pytest.raises(TypeError, match="is not an Agent"):
        ParallelAgentStep("agents", [SimulatedProcessor("a")])  # type: ignore[list-item]


async def test_a_failed_turn_is_retried_on_another_agent_even_before_the_breaker_opens() -> None:
    recorder = Recorder()
    alpha = counting("alpha")
    step = conversational(recorder, alpha, counting("beta"), breaker=BreakerPolicy(min_calls=10))
    assert await step.submit({"message": "hi", "session": "s1"}) == {"reply": "alpha saw 0"}
    alpha.add(ServerError("overloaded"))  # one failure: alpha stays healthy, its breaker closed
    assert await step.submit({"message": "again", "session": "s1"}) == {"reply": "beta saw 2"}
    assert recorder.names("alpha") == []
    assert step.pool.session_processor("s1").name == "beta"


async def test_a_retried_request_is_reported_in_its_own_run_even_when_another_run_dispatches_it() -> None:
    # Run B occupies p0; run A fails on p1 and its retry waits for p0, the processor it has not
    # tried. B's task frees p0 and so dispatches A's retry: the event must still go to run A.
    clock = VirtualClock()
    p0 = SimulatedProcessor("p0", latency=1.0, clock=clock)
    p1 = FaultyStep(SimulatedProcessor("p1", latency=1.0, clock=clock), fail_rate=1.0)
    hooked = Recorder()
    step = ParallelStep("fan", [p0, p1], clock=clock, failover=RETRY, breaker=None, on_event=hooked)
    workflow = Workflow.sequence(step, name="wf")
    streams: dict[str, list[nb.RunEvent]] = {"A": [], "B": []}
    run_b = asyncio.create_task(workflow.invoke({"request": "B"}, on_event=streams["B"].append))
    await settle()
    assert step.pool["p0"].in_flight == 1  # B holds p0
    run_a = asyncio.create_task(workflow.invoke({"request": "A"}, on_event=streams["A"].append))
    await drive(clock, [run_a, run_b])
    assert run_a.result() == {"response": {"processor": "p0", "request": "A"}}
    assert run_b.result() == {"response": {"processor": "p0", "request": "B"}}

    def retried(run: str) -> list[Custom]:
        return [e for e in streams[run] if isinstance(e, Custom) and e.name == "request_retried"]

    assert [(e.step, e.data["processor"], e.data["previous"]) for e in retried("A")] == [("fan", "p0", "p1")]
    assert retried("A")[0].run_id == next(e.run_id for e in streams["A"])
    assert retried("B") == []
    assert len(hooked.of("request_retried")) == 1  # the hooks see it once, as before


def test_the_pool_options_of_a_parallel_step_are_the_pools_keywords() -> None:
    clock = VirtualClock()
    hooked = Recorder()
    step = ParallelStep(
        "fan",
        processors(clock),
        balancer="least_loaded",
        breaker=None,
        failover=None,
        pool_concurrency=2,
        processor_concurrency=3,
        queue_size=7,
        deadline=5.0,
        attempt_timeout=2.0,
        sticky=True,
        max_sessions=4,
        latency_alpha=0.5,
        clock=clock,
        on_event=hooked,
        timeout=9.0,
        description="spread out",
    )
    pool = step.pool
    assert type(pool.balancer).__name__ == "LeastLoaded"
    assert pool.breaker is None and pool.failover is None and pool.clock is clock
    assert pool.concurrency == 2 and pool.queue.maxsize == 7 and pool.sticky
    assert [p.concurrency for p in pool.processors] == [3, 3, 3]
    assert (pool.deadline, pool.attempt_timeout, pool.latency_alpha) == (5.0, 2.0, 0.5)
    assert pool._dispatcher.max_sessions == 4
    pool.set_healthy("p0", False)
    assert hooked.names() == ["processor_unhealthy"]
    # The other keywords are the step's own.
    assert (step.timeout, step.description, step.concurrency) == (9.0, "spread out", 1024)
    with pytest.raises(ValueError, match="not both"):
        ParallelStep("again", pool=pool, deadline=1.0)
    with pytest.raises(TypeError, match="balancr"):
        ParallelStep("typo", processors(clock), balancr="least_loaded")
