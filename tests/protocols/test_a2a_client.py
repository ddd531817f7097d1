"""Our A2A client: against a bare a2a-sdk server (an executor written with the SDK alone) and
against NanoBrain's server; as a YAML step and as an agent's tool; timeouts, a remote that is
down, the circuit breaker, card checks."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("a2a")

from a2a.client import ClientConfig, create_client
from a2a.helpers.proto_helpers import new_task, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events.event_queue_v2 import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    GetTaskRequest,
    ListTasksRequest,
    TaskState,
)
from starlette.applications import Starlette

import nanobrain as nb
from nanobrain.agents.agent import Agent
from nanobrain.config import load_workflow
from nanobrain.infrastructure.parallel.breaker import BreakerPolicy, CircuitBreaker
from nanobrain.infrastructure.parallel.errors import CircuitOpen
from nanobrain.llm import ScriptedModel, call
from nanobrain.protocols.a2a import a2a_app
from nanobrain.protocols.a2a.client import A2AAgentStep, RemoteAgent
from nanobrain.protocols.errors import ProtocolError

from . import a2a_peer
from .conftest import free_port, served


class Reverser(AgentExecutor):
    """A plain a2a-sdk agent: streams the reversed text in two chunks, then completes."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id and context.context_id and context.message
        await event_queue.enqueue_event(
            new_task(context.task_id, context.context_id, TaskState.TASK_STATE_SUBMITTED, history=[context.message])
        )
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.start_work()
        text = context.get_user_input()[::-1]
        half = len(text) // 2
        await updater.add_artifact([new_text_part(text[:half])], artifact_id="answer", name="answer")
        await updater.add_artifact([new_text_part(text[half:])], artifact_id="answer", name="answer", append=True)
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def bare_sdk_app(base_url: str) -> Starlette:
    card = AgentCard(
        name="reverser",
        description="Reverses text",
        version="1.0.0",
        supported_interfaces=[AgentInterface(url=f"{base_url}/", protocol_binding="JSONRPC", protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="reverse", name="reverse", description="Reverse a text", tags=["text"])],
    )
    handler = DefaultRequestHandler(agent_executor=Reverser(), task_store=InMemoryTaskStore(), agent_card=card)
    return Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")])


async def test_client_against_a_bare_sdk_server_checks_the_card_and_reads_the_answer() -> None:
    async with served(bare_sdk_app) as base:
        remote = RemoteAgent(base, skill="reverse")
        try:
            card = await remote.card()
            assert card.name == "reverser"
            assert await remote.send("stressed") == "desserts"
        finally:
            await remote.aclose()
        with pytest.raises(ProtocolError, match="has no skill 'translate' \\(skills: reverse\\)"):
            await RemoteAgent(base, skill="translate").card()


async def test_a2a_agent_step_in_yaml_streams_remote_tokens_into_the_calling_run(tmp_path: Path) -> None:
    async with served(lambda base: a2a_app(a2a_peer.shout(), base_url=base)) as base:
        path = tmp_path / "caller.yaml"
        path.write_text(
            "name: caller\ninputs: {message: str}\noutputs: {reply: str}\nsteps:\n"
            f"  remote:\n    kind: a2a_agent\n    url: {base}\n    skill: shout\n    call_timeout: 30\n"
            "links:\n  - {from: inputs.message, to: remote.message}\n  - {from: remote.reply, to: outputs.reply}\n"
        )
        workflow = load_workflow(path)
        try:
            events = [e async for e in workflow.stream(message="far away")]
        finally:
            await workflow.aclose()
    tokens = [e.text for e in events if isinstance(e, nb.Token)]
    assert tokens == ["FAR ", "AWAY "]
    assert all(e.path == "caller" and e.step == "remote" for e in events if isinstance(e, nb.Token))
    states = [e.data["state"] for e in events if isinstance(e, nb.Custom) and e.name == "a2a_status"]
    assert states[0] == "TASK_STATE_SUBMITTED" and states[-1] == "TASK_STATE_COMPLETED"
    (finished,) = [e for e in events if isinstance(e, nb.RunFinished)]
    assert finished.outputs == {"reply": "FAR AWAY!"}


async def test_a_remote_agent_is_a_tool_with_the_schema_from_its_card() -> None:
    async with served(lambda base: a2a_app(a2a_peer.two_inputs(), base_url=base)) as base:
        remote = RemoteAgent(base, name="greeter")
        model = ScriptedModel([call("greeter", person="Ada", message="Hi"), "The greeter said: Hi, Ada"])
        agent = Agent("host", model=model, tools=[remote])
        try:
            assert await agent.ask(message="greet Ada") == "The greeter said: Hi, Ada"
        finally:
            await agent.aclose()
    (spec,) = model.requests[0].tools
    assert spec.name == "greeter" and spec.parameters["required"] == ["person", "message"]
    (result,) = [m for m in model.requests[-1].messages if m.role == "tool"]
    assert not result.is_error and result.content == '{"greeting": "Hi, Ada"}'


async def test_a_timeout_cancels_the_remote_task_and_is_a_clear_error() -> None:
    async with served(lambda base: a2a_app(a2a_peer.slow(), base_url=base)) as base:
        step = A2AAgentStep("remote", base, call_timeout=0.6)
        workflow = nb.Workflow.sequence(step, name="impatient")
        started = time.monotonic()
        with pytest.raises(nb.StepError) as caught:
            await workflow.run(message="a long text to echo slowly")
        assert time.monotonic() - started < 5
        assert "did not answer within 0.6s" in str(caught.value) and "cancelled" in str(caught.value)
        await workflow.aclose()
        client = await create_client(base, client_config=ClientConfig(streaming=False))
        try:
            (task,) = (await client.list_tasks(ListTasksRequest())).tasks
            fetched = await client.get_task(GetTaskRequest(id=task.id))
            assert fetched.status.state == TaskState.TASK_STATE_CANCELED
        finally:
            await client.close()


async def test_a_remote_that_is_down_fails_fast_and_the_breaker_opens() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    breaker = CircuitBreaker("remote", BreakerPolicy(consecutive_failures=2, min_calls=10, cool_down=60))
    remote = RemoteAgent(url, connect_timeout=2, breaker=breaker)
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(ProtocolError, match="its card could not be fetched") as caught:
            await remote.send("hello?")
        assert caught.value.retryable and time.monotonic() - started < 5
    with pytest.raises(CircuitOpen):
        await remote.send("hello?")
    assert breaker.trips == 1


async def test_a_failed_remote_task_is_an_error_that_says_why() -> None:
    async with served(lambda base: a2a_app(a2a_peer.failing(), base_url=base)) as base:
        remote = RemoteAgent(base)
        try:
            with pytest.raises(ProtocolError, match=r"ended failed: .*RuntimeError: cannot take 'boom'") as caught:
                await remote.send("boom")
            assert not caught.value.retryable
        finally:
            await remote.aclose()


def test_bad_a2a_agent_config_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\ninputs: {message: str}\noutputs: {reply: str}\nsteps:\n"
        "  remote:\n    kind: a2a_agent\n    url: ftp://example.org\n"
        "links:\n  - {from: inputs.message, to: remote.message}\n  - {from: remote.reply, to: outputs.reply}\n"
    )
    with pytest.raises(nb.ConfigError, match=r"steps\.remote\.url.*http:// or https://"):
        load_workflow(path)
