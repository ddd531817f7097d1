"""Registered kinds: a config model and a builder for each `kind:` a step may have.

Other packages add kinds (for example `agent`) with `register_step_kind`.
"""

from __future__ import annotations

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


def register_step_kind(name: str, model: type[StepConfig], build: Callable[[Any, StepBuild], Step | None]) -> None:
    """Make `kind: NAME` available in workflow documents."""
    STEP_KINDS[name] = StepKind(name, model, build)
