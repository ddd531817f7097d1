"""Choosing a model: one string, in `Agent(model=...)`, `--model` or `NANOBRAIN_MODEL`.

    local                                      the bundled SmolLM2-135M-Instruct (llama.cpp)
    local:/path/model.gguf                     any GGUF file
    openai:gpt-4o-mini                         OpenAI (needs OPENAI_API_KEY)
    openai-compatible:MODEL@http://HOST/v1     vLLM, Ollama, LM Studio, llama.cpp servers, `nanobrain serve`
    anthropic:MODEL                            Anthropic (needs ANTHROPIC_API_KEY)

A string is resolved when the agent first calls its model; a missing key is an error that
says how to configure one, never an invented answer.
"""

from __future__ import annotations

from nanobrain.agents.agent import Agent
from nanobrain.llm.errors import ModelNotConfigured
from nanobrain.llm.selection import resolve_model


def provider_for(spec: str) -> str:
    """Which provider a model string selects (or the error that says what is missing)."""
    try:
        return type(resolve_model(spec, resilient=False)).__name__
    except ModelNotConfigured as error:
        return f"error: {error}"


async def ask(base_url: str, message: str) -> str:
    """An agent on any OpenAI-compatible server: here `MODEL@base_url`, no key needed."""
    agent = Agent("assistant", model=f"openai-compatible:chat@{base_url}/v1", memory=False)
    try:
        return str(await agent.ask(message=message))
    finally:
        await agent.aclose()
