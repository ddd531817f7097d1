"""The parallel chat example fans requests over three agents and survives one of them failing,
in Python and in YAML alike."""

from __future__ import annotations

from pathlib import Path

import pytest

import nanobrain as nb
from nanobrain.agents.agent import Agent
from nanobrain.config import load_workflow
from nanobrain.infrastructure.parallel import BreakerState, LeastLoaded, ParallelAgentStep
from nanobrain.llm import ChatRequest, ScriptedModel, ServerError

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def answering(name: str) -> ScriptedModel:
    return ScriptedModel(respond=lambda request: f"{name} answers: {request.messages[-1].content}")


def failing() -> ScriptedModel:
    def respond(request: ChatRequest) -> ServerError:
        return ServerError("503 Service Unavailable", provider="scripted", status=503)

    return ScriptedModel(respond=respond)


def workflows() -> list[nb.Workflow]:
    from examples import parallel_chat

    return [parallel_chat.build(), load_workflow(EXAMPLES / "parallel_chat.yaml")]


@pytest.mark.parametrize("form", ["python", "yaml"])
async def test_the_chat_survives_one_of_three_agents_failing(form: str) -> None:
    workflow = workflows()[0 if form == "python" else 1]
    chat = workflow.steps["chat"]
    assert isinstance(chat, ParallelAgentStep)
    models = {"alpha": answering("alpha"), "beta": failing(), "gamma": answering("gamma")}
    for processor in chat.pool.processors:
        assert isinstance(processor.step, Agent)
        processor.step.model = models[processor.name]
    messages = [f"question {i}" for i in range(12)]
    events = [e async for e in workflow.stream(messages=messages)]
    replies = next(e for e in events if isinstance(e, nb.RunFinished)).outputs["replies"]
    assert [reply.split(": ", 1)[1] for reply in replies] == messages  # every request answered, in order
    assert {reply.split()[0] for reply in replies} == {"alpha", "gamma"}
    custom = [e for e in events if isinstance(e, nb.Custom)]
    assert any(e.name == "breaker_opened" and e.data["processor"] == "beta" for e in custom)
    assert any(e.name == "request_retried" and e.data["previous"] == "beta" for e in custom)
    beta = chat.pool["beta"]
    assert beta.breaker is not None and beta.breaker.state is BreakerState.OPEN
    assert len(models["beta"].requests) == 2  # two failures opened its breaker; no more traffic
    await chat.aclose()


def test_python_and_yaml_declare_the_same_pool() -> None:
    python, yaml = (w.steps["chat"] for w in workflows())
    assert isinstance(python, ParallelAgentStep) and isinstance(yaml, ParallelAgentStep)
    for step in (python, yaml):
        pool = step.pool
        assert [p.name for p in pool.processors] == ["alpha", "beta", "gamma"]
        assert [p.concurrency for p in pool.processors] == [4, 4, 4]
        assert isinstance(pool.balancer, LeastLoaded)
        assert step.batch and pool.deadline == 120 and pool.attempt_timeout == 60
    assert python.pool.breaker == yaml.pool.breaker
    assert python.pool.failover == yaml.pool.failover
    assert python.inputs.keys() == yaml.inputs.keys() == {"requests"}
