"""A2A through the official `a2a-sdk` (protocol 1.0, 0.3 clients served too): workflows as A2A
agents, remote A2A agents as steps and tools."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "agent_card": "card",
    "WorkflowExecutor": "executor",
    "a2a_app": "server",
    "a2a_routes": "server",
    "A2AAgentStep": "client",
    "RemoteAgent": "client",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Lazy: a2a-sdk is an optional extra and heavy to import.
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
