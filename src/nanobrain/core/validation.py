"""Build-time checks of a workflow graph. Each problem names where it is and what is wrong."""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import Problem
from .fan_in import element_type, fan_in_problems, mismatch_hint
from .links import COLLECTING, RESERVED_ENDPOINTS, ConditionalLink, Link, TransformLink, parse_endpoint
from .typing_utils import is_compatible, type_name

if TYPE_CHECKING:
    from .data_units import DataUnit
    from .steps import Step


def find_problems(
    steps: Mapping[str, Step],
    links: list[Link],
    inputs: Mapping[str, DataUnit],
    outputs: Mapping[str, DataUnit],
) -> list[Problem]:
    problems: list[Problem] = []
    for name in steps:
        if name in RESERVED_ENDPOINTS:
            problems.append(Problem(f"steps.{name}", f"{name!r} is reserved for the workflow's own {name}"))

    def endpoint_unit(endpoint: str, side: str, where: str) -> DataUnit | None:
        try:
            step_name, port = parse_endpoint(endpoint)
        except ValueError as exc:
            problems.append(Problem(where, str(exc)))
            return None
        if step_name == "inputs":
            if side == "target":
                problems.append(Problem(where, f"{endpoint!r}: a link cannot write into a workflow input"))
                return None
            return _lookup(inputs, port, endpoint, "workflow input", where, problems)
        if step_name == "outputs":
            if side == "source":
                problems.append(Problem(where, f"{endpoint!r}: a link cannot read from a workflow output"))
                return None
            return _lookup(outputs, port, endpoint, "workflow output", where, problems)
        step = steps.get(step_name)
        if step is None:
            known = names_list(steps)
            problems.append(Problem(where, f"unknown step {step_name!r} in {endpoint!r} (steps: {known})"))
            return None
        units = step.outputs if side == "source" else step.inputs
        kind = "output" if side == "source" else "input"
        return _lookup(units, port, endpoint, f"step {step_name!r} {kind}", where, problems)

    connected: set[tuple[str, str]] = set()
    produced: set[str] = set()
    edges: list[tuple[str, str, Link]] = []
    for link in links:
        where = f"links[{link.source} -> {link.target}]"
        source = endpoint_unit(link.source, "source", where)
        target = endpoint_unit(link.target, "target", where)
        if target is not None:
            # Count the target as fed even when the source is wrong: one mistake, one problem.
            target_step, target_port = parse_endpoint(link.target)
            if target_step == "outputs":
                produced.add(target_port)
            else:
                connected.add((target_step, target_port))
        if source is None or target is None:
            continue
        source_type = _carried_type(link, source.type)
        target_type = element_type(target.type) if link.fan_in in COLLECTING else target.type
        if not is_compatible(source_type, target_type):
            problems.append(
                Problem(
                    where,
                    f"type mismatch: {link.source} gives {type_name(source_type)} "
                    f"but {link.target} expects {type_name(target_type)}"
                    + mismatch_hint(link, source_type, target.type),
                )
            )
        source_step, _ = parse_endpoint(link.source)
        edges.append((source_step, parse_endpoint(link.target)[0], link))

    for name, step in steps.items():
        for port in step.required_inputs:
            if (name, port) not in connected:
                problems.append(
                    Problem(
                        f"steps.{name}.inputs.{port}",
                        f"required input {port!r} of step {name!r} is not connected: link something to "
                        f"'{name}.{port}' or give it a default",
                    )
                )
    for name, step in steps.items():
        needs = getattr(step, "resources", None)
        refusal = step.executor.refusal(needs) if needs is not None else None
        if refusal is not None:  # it would wait forever
            problems.append(Problem(f"steps.{name}.resources", f"step {name!r} {refusal}"))
    for name in outputs:
        if name not in produced:
            problems.append(Problem(f"outputs.{name}", f"workflow output {name!r} is not produced by any link"))

    problems.extend(fan_in_problems([link for _, _, link in edges]))  # only links whose ends exist
    problems.extend(_unreachable(steps, edges))
    problems.extend(unbounded_cycles(steps, [(s, t, link.max_iterations) for s, t, link in edges]))
    return problems


def names_list(names: Iterable[str], limit: int = 10) -> str:
    """`a, b, c` for messages: the first `limit` names, then how many more (a message stays short)."""
    shown: list[str] = []
    more = 0
    for name in names:
        if len(shown) < limit:
            shown.append(name)
        else:
            more += 1
    if not shown:
        return "none"
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _lookup(
    units: Mapping[str, DataUnit], port: str, endpoint: str, what: str, where: str, problems: list[Problem]
) -> DataUnit | None:
    unit = units.get(port)
    if unit is None:
        known = names_list(units)
        problems.append(Problem(where, f"{what} {port!r} does not exist in {endpoint!r} (known: {known})"))
    return unit


def _carried_type(link: Link, source_type: Any) -> Any:
    transform = getattr(link, "transform", None)
    if isinstance(link, TransformLink | ConditionalLink) and transform is not None:
        # Resolve the annotation: under `from __future__ import annotations` it is a string.
        try:
            hints = typing.get_type_hints(transform)
        except Exception:  # not a plain function, or unresolvable names: cannot tell, so allow
            return None
        return hints.get("return", None)  # unannotated transform: cannot tell, so allow
    return source_type


def _unreachable(steps: Mapping[str, Step], edges: list[tuple[str, str, Link]]) -> list[Problem]:
    successors: dict[str, set[str]] = {}
    for source, target, _ in edges:
        successors.setdefault(source, set()).add(target)
    roots = [name for name, step in steps.items() if not step.inputs or not step.trigger.fires_on_input]
    frontier = ["inputs", *roots]
    seen = set(frontier)
    while frontier:
        node = frontier.pop()
        for nxt in successors.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return [
        Problem(
            f"steps.{name}",
            f"step {name!r} is unreachable: no link leads to it from the workflow inputs or a source step",
        )
        for name in steps
        if name not in seen
    ]


def unbounded_cycles(names: Iterable[str], edges: list[tuple[str, str, int | None]]) -> list[Problem]:
    """A cycle is allowed only if one of its links has an iteration bound (the edges' third item).

    A depth-first search with an explicit stack: a chain of 100,000 steps needs no recursion.
    """
    graph: dict[str, list[str]] = {name: [] for name in names}
    for source, target, bound in edges:
        if bound is None and source in graph and target in graph:
            graph[source].append(target)
    problems = []
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    path: list[str] = []
    position: dict[str, int] = {}  # index of each node of the path in `path`
    for start in graph:
        if start in state:
            continue
        state[start] = 1
        position[start] = 0
        path.append(start)
        successors = [iter(graph[start])]
        while successors:
            node = path[-1]
            nxt = next(successors[-1], None)
            if nxt is None:
                successors.pop()
                path.pop()
                del position[node]
                state[node] = 2
                continue
            if state.get(nxt) == 1:
                cycle = [*path[position[nxt] :], nxt]
                if len(cycle) == 2:
                    # Most often one step object used twice in a chain, not a loop on purpose.
                    hint = (
                        f"step {nxt!r} is linked to itself; to use one step several times, add each use "
                        f"under its own name (step.renamed('{nxt}_2') or workflow.add(step, name='{nxt}_2')); "
                        "for a loop on purpose, set max_iterations on the link"
                    )
                else:
                    hint = "cycle without an iteration bound: " + " -> ".join(cycle)
                    hint += " (set max_iterations on one of its links)"
                problems.append(Problem("links", hint))
            elif nxt not in state:
                state[nxt] = 1
                position[nxt] = len(path)
                path.append(nxt)
                successors.append(iter(graph[nxt]))
    return problems
