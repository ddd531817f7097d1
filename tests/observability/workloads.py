"""Workflows the observability tests run: a nested workflow with an agent and a tool, failures,
retries and a parallel step with a failing processor."""

from __future__ import annotations

import itertools

import nanobrain as nb
from nanobrain.agents.agent import Agent
from nanobrain.core.retry import RetryPolicy
from nanobrain.infrastructure.parallel import BreakerPolicy, ParallelStep
from nanobrain.llm import ChatRequest, ScriptedModel, call
from nanobrain.llm.scripted import Reply
from nanobrain.testing import FaultyStep, SimulatedProcessor


def lookup(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def nested_agent_workflow(model_name: str = "tiny") -> nb.Workflow:
    """outer: prepare -> inner(agent with a tool) -> polish."""
    model = ScriptedModel(respond=_tool_then_answer, chunk_size=4, model=model_name)
    agent = Agent("weather", model=model, tools=[lookup])

    @nb.step
    def prepare(city: str) -> str:
        return city.strip()

    @nb.step
    def polish(reply: str) -> str:
        return reply.upper()

    inner = nb.Workflow.sequence(agent, name="inner")
    return nb.Workflow.sequence(prepare, inner, polish, name="outer")


def _tool_then_answer(request: ChatRequest) -> Reply:
    """Calls the tool first, answers once the tool's result is in (per request: safe under concurrency)."""
    if request.messages[-1].role == "tool":
        return "It is sunny."
    return call("lookup", city="Oslo")


def failing_workflow() -> nb.Workflow:
    @nb.step
    def explode(x: int) -> int:
        raise ValueError("bad input")

    return nb.Workflow.sequence(explode, name="failing")


def flaky_workflow() -> nb.Workflow:
    """A step that fails once, then succeeds on its retry."""
    calls = itertools.count()

    @nb.step(retry=nb.RetryPolicy(attempts=3, initial=0, jitter=0))
    def flaky(x: int) -> int:
        if next(calls) == 0:
            raise ConnectionError("first try fails")
        return x + 1

    return nb.Workflow.sequence(flaky, name="flaky")


def parallel_workflow() -> nb.Workflow:
    """A parallel step whose first processor always fails (its breaker opens, the request moves on)."""
    processors = [SimulatedProcessor(f"p{i}") for i in range(2)]
    processors[0] = FaultyStep(processors[0], fail_rate=1.0)  # type: ignore[call-overload]
    step = ParallelStep(
        "fan",
        processors,
        balancer="round_robin",
        failover=RetryPolicy(attempts=3, initial=0.0, jitter=0.0),
        breaker=BreakerPolicy(min_calls=1),
    )
    return nb.Workflow.sequence(step, name="parallel")
