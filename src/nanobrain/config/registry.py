"""Registered kinds: a config model and a builder for each `kind:` a step may have.

Other packages add kinds (for example `agent`) with `register_step_kind`. Kinds of NanoBrain's
own packages are known by name and imported on first use, so loading a document imports only
what it uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .models import StepConfig

if TYPE_CHECKING:
    from ..core.steps import Step
    from .loader import StepBuild


@dataclass(frozen=True)
class StepKind:
    name: str
    model: type[StepConfig]
    build: Callable[[Any, StepBuild], Step | None]


STEP_KINDS: dict[str, StepKind] = {}

#: Kinds whose module registers them when imported.
_KINDS_BY_MODULE: dict[str, str] = {
    "agent": "nanobrain.agents.config",
    "a2a_agent": "nanobrain.protocols.a2a.config",
    "delegate": "nanobrain.agents.delegation_config",
    "parallel": "nanobrain.infrastructure.parallel.config",
    "parallel_agent": "nanobrain.infrastructure.parallel.config",
    "parallel_conversational_agent": "nanobrain.infrastructure.parallel.config",
}


def register_step_kind(name: str, model: type[StepConfig], build: Callable[[Any, StepBuild], Step | None]) -> None:
    """Make `kind: NAME` available in workflow documents."""
    STEP_KINDS[name] = StepKind(name, model, build)


def step_kind(name: str) -> StepKind | None:
    """The registered kind called `name`, importing the module that provides it if needed."""
    if name not in STEP_KINDS and name in _KINDS_BY_MODULE:
        importlib.import_module(_KINDS_BY_MODULE[name])
    return STEP_KINDS.get(name)


def all_step_kinds() -> dict[str, StepKind]:
    """Every kind, the lazily provided ones included (for the JSON Schema and error messages)."""
    for module in set(_KINDS_BY_MODULE.values()):
        importlib.import_module(module)
    return STEP_KINDS
