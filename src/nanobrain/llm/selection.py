"""Choose a model with one string, in config or `NANOBRAIN_MODEL`.

    local                                  the bundled SmolLM2-135M-Instruct (llama.cpp)
    local:/path/to/model.gguf              any GGUF file
    openai:gpt-4o-mini                     OpenAI (OPENAI_API_KEY)
    openai-compatible:MODEL@http://host/v1 vLLM, Ollama, LM Studio, llama.cpp servers
    anthropic:claude-sonnet-4-5            Anthropic (ANTHROPIC_API_KEY)

A missing key, package or file is a clear error that says how to fix it: there is no
fallback that would invent an answer.
"""

from __future__ import annotations

import os

from .errors import ModelNotConfigured
from .provider import Provider, ResilientProvider

DEFAULT_MODEL = "local"

HOW_TO = (
    "Set NANOBRAIN_MODEL (or `model:` in the config) to one of: local, local:/path/model.gguf, "
    "openai:MODEL (with OPENAI_API_KEY), openai-compatible:MODEL@http://HOST/v1, anthropic:MODEL "
    "(with ANTHROPIC_API_KEY)."
)


def resolve_model(spec: str | None = None, *, resilient: bool = True) -> Provider:
    """A provider for `spec` (default: NANOBRAIN_MODEL, then the local model)."""
    text = (spec or os.environ.get("NANOBRAIN_MODEL") or DEFAULT_MODEL).strip()
    kind, _, rest = text.partition(":")
    provider: Provider
    if kind == "local":
        from .local import LocalProvider

        provider = LocalProvider(rest or None)
    elif kind == "openai":
        if not rest:
            raise ModelNotConfigured(f"'openai:' needs a model name, e.g. openai:gpt-4o-mini. {HOW_TO}")
        if not os.environ.get("OPENAI_API_KEY"):
            raise ModelNotConfigured(f"model {text!r} needs OPENAI_API_KEY in the environment. {HOW_TO}")
        from .openai_compat import OpenAICompatibleProvider

        provider = OpenAICompatibleProvider(rest)
    elif kind == "openai-compatible":
        model, at, base_url = rest.rpartition("@")
        if not at or not model or not base_url.startswith(("http://", "https://")):
            raise ModelNotConfigured(
                f"{text!r}: write openai-compatible:MODEL@http://HOST:PORT/v1 (the server's base URL). {HOW_TO}"
            )
        from .openai_compat import OpenAICompatibleProvider

        # The provider reads OPENAI_API_KEY itself, so that its errors say where the key came from.
        provider = OpenAICompatibleProvider(model, base_url=base_url)
    elif kind == "anthropic":
        if not rest:
            raise ModelNotConfigured(f"'anthropic:' needs a model name, e.g. anthropic:claude-sonnet-4-5. {HOW_TO}")
        if not os.environ.get("ANTHROPIC_API_KEY"):
            raise ModelNotConfigured(f"model {text!r} needs ANTHROPIC_API_KEY in the environment. {HOW_TO}")
        from .anthropic_provider import AnthropicProvider

        provider = AnthropicProvider(rest)
    else:
        raise ModelNotConfigured(f"unknown model {text!r}. {HOW_TO}")
    return ResilientProvider(provider) if resilient and kind != "local" else provider
