"""One layer retries: a provider from `resolve_model()` retries on its own, but not under a pool's
failover or a step's `retry:`; and a step's `retry:` leaves auth and bad-request errors alone.

Against a real HTTP server on 127.0.0.1 through the real OpenAI SDK; the calls are counted there.
"""

from __future__ import annotations

import time

import pytest
from tests.llm.conftest import free_port
from tests.llm.local_http import LocalServer, Received, Response

from nanobrain import RetryPolicy, StepError, Workflow
from nanobrain.agents.agent import Agent
from nanobrain.infrastructure.parallel import ParallelAgentStep
from nanobrain.llm import AuthError, ResilientProvider, ServerError, resolve_model

pytest.importorskip("openai")


class Answers(LocalServer):
    """Answers every request with one status: 200 with a completion, or an error."""

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status

    def answer(self, request: Received) -> Response:
        if self.status != 200:
            return Response.of_json(self.status, {"error": {"message": f"status {self.status}", "type": "test"}})
        message = {"role": "assistant", "content": "Hello."}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        body = {"id": "c1", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice]}
        return Response.of_json(200, {**body, "usage": usage})

    def model(self) -> str:
        return f"openai-compatible:m@{self.url}/v1"


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


async def test_a_failing_request_to_parallel_agents_costs_one_call_per_failover_attempt() -> None:
    async with Answers(500) as server:
        providers = [resolve_model(server.model()) for _ in range(3)]
        assert all(isinstance(provider, ResilientProvider) for provider in providers)
        agents = [Agent(f"a{i}", model=provider) for i, provider in enumerate(providers)]
        step = ParallelAgentStep("chat", agents, failover=RetryPolicy(attempts=3, initial=0.0, jitter=0.0))
        with pytest.raises(StepError) as info:
            await Workflow.sequence(step, name="w").run(message="Hi!")
    assert isinstance(info.value.__cause__, ServerError)
    assert len(server.requests) == 3, "3 failover attempts, each one call (not 3 provider retries each)"


async def test_a_dead_endpoint_fails_over_at_once() -> None:
    async with Answers(200) as server:
        dead = Agent("dead", model=resolve_model(f"openai-compatible:m@http://127.0.0.1:{free_port()}/v1"))
        alive = Agent("alive", model=resolve_model(server.model()))
        step = ParallelAgentStep("chat", [dead, alive], balancer="round_robin")
        workflow = Workflow.sequence(step, name="w")
        started = time.perf_counter()
        result = await workflow.run(message="Hi!")
        elapsed = time.perf_counter() - started
    assert result == {"reply": "Hello."}
    assert len(server.requests) == 1
    # The provider's own retries would wait 0.5 s + 1 s before giving up on the dead endpoint.
    assert elapsed < 1.2, f"failover took {elapsed:.2f} s"


async def test_a_provider_used_alone_still_retries() -> None:
    async with Answers(500) as server:
        provider = resolve_model(server.model())
        assert isinstance(provider, ResilientProvider)
        provider.retry = RetryPolicy(attempts=3, initial=0.0, jitter=0.0, defer=True)
        agent = Agent("alone", model=provider)
        with pytest.raises(StepError):
            await Workflow.sequence(agent, name="w").run(message="Hi!")
    assert len(server.requests) == 3


async def test_a_step_retry_over_a_resilient_provider_does_not_multiply() -> None:
    async with Answers(500) as server:
        agent = Agent("a", model=resolve_model(server.model()), retry=RetryPolicy(attempts=2, initial=0.0, jitter=0.0))
        with pytest.raises(StepError):
            await Workflow.sequence(agent, name="w").run(message="Hi!")
    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [401, 400])
async def test_a_step_retry_does_not_retry_auth_or_bad_request_errors(status: int) -> None:
    async with Answers(status) as server:
        agent = Agent("a", model=resolve_model(server.model()), retry=RetryPolicy(attempts=3, initial=0.0, jitter=0.0))
        with pytest.raises(StepError) as info:
            await Workflow.sequence(agent, name="w").run(message="Hi!")
    assert not isinstance(info.value.__cause__, ServerError)
    assert isinstance(info.value.__cause__, AuthError) == (status == 401)
    assert len(server.requests) == 1
