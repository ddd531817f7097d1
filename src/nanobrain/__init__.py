"""NanoBrain: event-driven workflows for AI agents.

`import nanobrain` loads only the engine; configuration, the CLI and optional integrations
(Dask, language models, servers) import their heavy dependencies when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core.clock import Clock, RealClock, VirtualClock
from .core.context import StepContext, current_context
from .core.data_units import MISSING, DataUnit, FileUnit, MemoryUnit, StreamUnit, StringUnit
from .core.errors import (
    ConfigError,
    CycleLimitExceeded,
    ItemFailed,
    LinkFailed,
    NanoBrainError,
    Problem,
    RunError,
    StepError,
    StepTimeout,
    UnitTypeError,
    WorkflowValidationError,
)
from .core.events import (
    Custom,
    OutputSet,
    RunEvent,
    RunFailed,
    RunFinished,
    RunStarted,
    StepFailed,
    StepFinished,
    StepStarted,
    Token,
)
from .core.executors import DaskExecutor, Executor, InProcessExecutor, ProcessExecutor, ThreadExecutor
from .core.links import ConditionalLink, Link, QueueLink, TransformLink
from .core.map import Map
from .core.resources import Resources
from .core.retry import RetryPolicy
from .core.schemas import input_schema, output_schema
from .core.sinks import instrument
from .core.steps import FunctionStep, Step, step
from .core.triggers import AllDataReceived, Condition, Interval, Manual, OnUpdate, Trigger
from .core.workflow import Workflow, WorkflowHandle

if TYPE_CHECKING:  # the lazy exports below, typed for checkers
    from .agents.agent import Agent
    from .llm.scripted import ScriptedModel
    from .llm.tools import Tool, tool

__version__ = "0.1.0"


def load_workflow(path: Any, **kwargs: Any) -> Workflow:
    """Load a workflow from a YAML file (see `nanobrain.config`)."""
    from .config.loader import load_workflow as _load

    return _load(path, **kwargs)


# The agent API lives in modules that import pydantic and the model layer, so it is loaded on first
# attribute access rather than with the engine.
_LAZY = {
    "Agent": "nanobrain.agents.agent",
    "Tool": "nanobrain.llm.tools",
    "tool": "nanobrain.llm.tools",
    "ScriptedModel": "nanobrain.llm.scripted",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nanobrain' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "MISSING",
    "Agent",
    "AllDataReceived",
    "Clock",
    "Condition",
    "ConditionalLink",
    "ConfigError",
    "Custom",
    "CycleLimitExceeded",
    "DaskExecutor",
    "DataUnit",
    "Executor",
    "FileUnit",
    "FunctionStep",
    "InProcessExecutor",
    "Interval",
    "ItemFailed",
    "Link",
    "LinkFailed",
    "Manual",
    "Map",
    "MemoryUnit",
    "NanoBrainError",
    "OnUpdate",
    "OutputSet",
    "Problem",
    "ProcessExecutor",
    "QueueLink",
    "RealClock",
    "Resources",
    "RetryPolicy",
    "RunError",
    "RunEvent",
    "RunFailed",
    "RunFinished",
    "RunStarted",
    "ScriptedModel",
    "Step",
    "StepContext",
    "StepError",
    "StepFailed",
    "StepFinished",
    "StepStarted",
    "StepTimeout",
    "StreamUnit",
    "StringUnit",
    "ThreadExecutor",
    "Token",
    "Tool",
    "TransformLink",
    "Trigger",
    "UnitTypeError",
    "VirtualClock",
    "Workflow",
    "WorkflowHandle",
    "WorkflowValidationError",
    "current_context",
    "input_schema",
    "instrument",
    "load_workflow",
    "output_schema",
    "step",
    "tool",
]
