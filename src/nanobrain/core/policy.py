"""Policies (retry, breaker, rate limit, health, autoscale) are frozen dataclasses whose fields state
their default, bounds and meaning once: Python builds them (`check_bounds` applies the bounds), and
pydantic validates the same classes in YAML from the field metadata (`import nanobrain` needs no pydantic).
"""

from __future__ import annotations

import operator
from dataclasses import field, fields
from typing import Any

#: How pydantic validates a policy declared in YAML: unknown keys are errors.
POLICY_CONFIG: dict[str, Any] = {"extra": "forbid"}

_BOUNDS = (("gt", operator.gt, "greater than"), ("ge", operator.ge, "at least"), ("le", operator.le, "at most"))


def option(default: Any, description: str, **bounds: float) -> Any:
    """A policy field: its default, what it means, and bounds (`gt`, `ge`, `le`)."""
    return field(default=default, metadata={"description": description, **bounds})


def check_bounds(policy: Any) -> None:
    """Raise ValueError naming the first field of `policy` outside its bounds."""
    for spec in fields(policy):
        value = getattr(policy, spec.name)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        for key, within, words in _BOUNDS:
            limit = spec.metadata.get(key)
            if limit is not None and not within(value, limit):
                raise ValueError(f"{type(policy).__name__}: {spec.name} must be {words} {limit:g}, got {value!r}")
