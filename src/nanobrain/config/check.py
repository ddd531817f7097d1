"""Checking a workflow file without running its code (`nanobrain validate`).

Everything that needs no user code is checked: the YAML, the schema, environment variables,
nested files, step kinds, link endpoints and unbounded cycles. Referenced modules are located,
not imported; what they define (and so ports and types) is checked only by loading.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..core.imports import import_policy
from ..core.links import parse_endpoint
from ..core.validation import names_list, unbounded_cycles
from .context import BuildContext, CheckReport
from .files import MAX_FILE_BYTES
from .loader import (
    _drop_caused_by_unset,
    _expanded,
    _file_context,
    _link,
    _raise_problems,
    _unit,
    _workflow_config,
    build_step,
)
from .models import WorkflowConfig

MAX_NAMES_SHOWN = 10


def check_workflow(
    path: str | os.PathLike[str],
    *,
    allowed_modules: Sequence[str] | None = None,
    allowed_dirs: Sequence[str | os.PathLike[str]] = (),
    max_bytes: int = MAX_FILE_BYTES,
) -> CheckReport:
    """Check a workflow file without running user code. Raises ConfigError listing every problem.

    Everything that needs no user code is checked: the YAML, the schema, environment variables,
    nested files, step kinds, link endpoints and unbounded cycles. Each referenced module is
    located with the import system's finders, which run none of its code (NanoBrain's own modules
    are imported). What a module defines, and so ports and types, is known only by importing it:
    `load_workflow` checks those.
    """
    ctx = _file_context(path, allowed_modules, allowed_dirs, max_bytes, execute=False)
    with import_policy(ctx.policy):
        config = check_source(ctx)
    _raise_problems(ctx)
    assert config is not None
    return CheckReport(config.name, len(config.steps), len(config.inputs), len(config.outputs), tuple(ctx.deferred))


def check_source(ctx: BuildContext) -> WorkflowConfig | None:
    data, unset = _expanded(ctx)
    before = len(ctx.problems)
    config = check_inline(data, ctx)
    if unset:
        _drop_caused_by_unset(ctx, before, unset)
    return config


def check_inline(data: Any, ctx: BuildContext) -> WorkflowConfig | None:
    """Check a document without building its graph: each step (references located), then the links."""
    config = _workflow_config(data, ctx)
    if config is None:
        return None
    ctx.named_executors.update(config.executors)
    for side, declared in (("inputs", config.inputs), ("outputs", config.outputs)):
        for name, decl in declared.items():
            _unit(name, decl, (side, name), ctx)
    for name, raw_step in config.steps.items():
        build_step(name, raw_step, ctx)
    reported: set[int] = set()  # links whose malformed endpoint building them already reported
    for i, link_config in enumerate(config.links):
        before = len(ctx.problems)
        _link(link_config, ("links", i), ctx)
        if len(ctx.problems) > before:
            reported.add(i)
    _check_endpoints(config, ctx, reported)
    return config


def _check_endpoints(config: WorkflowConfig, ctx: BuildContext, reported: set[int]) -> None:
    """Link endpoints that name no step, input or output; unbounded cycles between steps."""
    edges: list[tuple[str, str, int | None]] = []
    for i, link in enumerate(config.links):
        owners = []
        for side, endpoint in (("from", link.source), ("to", link.target)):
            try:
                owner, port = parse_endpoint(endpoint)
            except ValueError as exc:
                if i not in reported:
                    ctx.problem(("links", i), str(exc))
                continue
            owners.append(owner)
            declared = {"inputs": config.inputs, "outputs": config.outputs}.get(owner)
            if declared is None:
                if owner not in config.steps:
                    known = names_list(config.steps, MAX_NAMES_SHOWN)
                    ctx.problem(("links", i), f"unknown step {owner!r} in {endpoint!r} (steps: {known})")
            elif (owner, side) in (("inputs", "to"), ("outputs", "from")):
                which = "write into a workflow input" if owner == "inputs" else "read from a workflow output"
                ctx.problem(("links", i), f"{endpoint!r}: a link cannot {which}")
            elif port not in declared:
                known = names_list(declared, MAX_NAMES_SHOWN)
                what = "workflow input" if owner == "inputs" else "workflow output"
                ctx.problem(("links", i), f"{what} {port!r} does not exist in {endpoint!r} (known: {known})")
        if len(owners) == 2:
            edges.append((owners[0], owners[1], link.max_iterations))
    for problem in unbounded_cycles(config.steps, edges):
        ctx.problem(("links",), problem.message)
