"""`kind: map`: run one step (declared inline, any kind) once per item of a list input."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..core.map import Map
from ..core.steps import Step
from .loader import StepBuild, build_step
from .models import StepConfig
from .registry import register_step_kind


class MapStepConfig(StepConfig):
    """Run `step` once per item of input `over` (a list); outputs are lists in input order."""

    kind: Literal["map"] = "map"
    step: dict[str, Any] = Field(description="The step run per item, declared like any step (with its kind)")
    over: str | None = Field(None, description="The step's input that takes the items (default: its only input)")
    max_concurrency: int | None = Field(None, ge=1, description="How many items run at once (default: all)")
    on_error: Literal["fail", "collect"] = Field(
        "fail", description="fail: stop at the first failed item; collect: None in its place and an 'errors' output"
    )


def _build_map(config: MapStepConfig, build: StepBuild) -> Step | None:
    inner = build_step(build.name, config.step, build.ctx, (*build.location, "step"))
    if inner is None:
        return None
    try:
        return Map(
            inner,
            over=config.over,
            name=build.name,
            max_concurrency=config.max_concurrency,
            on_error=config.on_error,
            **build.options(config),
        )
    except ValueError as exc:
        build.problem("over" if config.over else "step", str(exc))
        return None


register_step_kind("map", MapStepConfig, _build_map)
