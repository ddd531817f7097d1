"""Chat requests fanned out over three agents behind a load balancer, with failover.

Each agent has a circuit breaker: when one endpoint fails, its requests are retried on the other
two and it gets no traffic until a probe after the cool-down succeeds. `parallel_chat.yaml`
declares the same workflow. The models come from CHAT_MODEL_ALPHA, CHAT_MODEL_BETA and
CHAT_MODEL_GAMMA (by default three OpenAI-compatible servers on ports 8081-8083); the tests drive
the agents with scripted models instead.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

import nanobrain as nb
from nanobrain.agents.agent import Agent
from nanobrain.infrastructure.parallel import BreakerPolicy, ParallelAgentStep

SYSTEM = "You are a concise assistant. Answer in one sentence."
DEFAULT_MODELS = {
    "alpha": os.environ.get("CHAT_MODEL_ALPHA", "openai-compatible:chat@http://127.0.0.1:8081/v1"),
    "beta": os.environ.get("CHAT_MODEL_BETA", "openai-compatible:chat@http://127.0.0.1:8082/v1"),
    "gamma": os.environ.get("CHAT_MODEL_GAMMA", "openai-compatible:chat@http://127.0.0.1:8083/v1"),
}


def build(models: Mapping[str, object] | None = None) -> nb.Workflow:
    """The workflow; `models` (by agent name) overrides the default models."""
    chosen = {**DEFAULT_MODELS, **(models or {})}
    agents = [Agent(name, model=model, system=SYSTEM, memory=False, concurrency=4) for name, model in chosen.items()]
    chat = ParallelAgentStep(
        "chat",
        agents,
        batch=True,
        balancer="least_loaded",
        breaker=BreakerPolicy(failure_rate=0.5, window=60, min_calls=2, cool_down=30),
        failover=nb.RetryPolicy(attempts=3, initial=0.05, max_wait=1.0),
        deadline=120,
        attempt_timeout=60,
    )
    workflow = nb.Workflow("parallel_chat", inputs={"messages": list[str]}, outputs={"replies": list[str]})
    workflow.add(chat)
    workflow.link("inputs.messages", "chat.requests")
    workflow.link("chat.results", "outputs.replies")
    return workflow


if __name__ == "__main__":
    questions = ["What is the capital of France?", "What is 2 + 2?", "Name a prime number.", "Say hello."]
    print(asyncio.run(build().run(messages=questions)))
