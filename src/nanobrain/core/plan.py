"""A workflow compiled for execution: per-step routing tables built once, read by every run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .clock import Clock
from .data_units import DataUnit, StreamUnit
from .links import COLLECTING, Link, parse_endpoint
from .step_policies import Invoke, wrap_invoke
from .triggers import Interval

if TYPE_CHECKING:
    from .steps import Step


@dataclass(slots=True)
class Route:
    """Where a value goes: a link to a step's input (`target` >= 0) or to a workflow output (-1)."""

    link: Link
    target: int
    port: str
    plain: bool  # a direct link: no `carry` call needed
    bound: int  # index of this link's iteration counter, or -1 when unbounded
    file_unit: bool  # the target unit does I/O in `set` (`awaits_set`): await it
    collect: Collector | None = None  # set when the link collects into its target input


@dataclass(slots=True, frozen=True)
class Collector:
    """A collecting link's place among the collecting links into one step input."""

    slot: int  # this link's position (its value's index in the list)
    size: int  # how many links collect into the input
    keys: tuple[str, ...] | None  # dict keys by slot (`collect_dict`), None for a list


def run_unit(template: DataUnit, name: str) -> DataUnit:
    """The template of a run's own copy of a declared unit, named `step.port`.

    Nobody drains a run's units as a stream: backpressure comes from the steps' pending-firing
    capacity, so a stream declaration becomes a plain unit holding the latest value (a stream
    copy would fill up after `maxsize` values and refuse the next one).
    """
    if isinstance(template, StreamUnit):
        return DataUnit(name, template.type, default=template.default)
    return template.clone(name)


@dataclass(slots=True)
class StepPlan:
    step: Step
    index: int
    inputs: dict[str, DataUnit]
    outputs: dict[str, DataUnit]
    routes: dict[str, tuple[Route, ...]]
    connected: tuple[str, ...]
    required: tuple[str, ...]
    capacity: int | None
    invoke: Invoke


@dataclass(slots=True)
class Plan:
    name: str
    workflow_inputs: dict[str, DataUnit]
    workflow_outputs: dict[str, DataUnit]
    steps: list[StepPlan]
    input_routes: dict[str, tuple[Route, ...]]
    sources: list[int]
    timers: list[int]
    bounded_links: int


def compile_plan(
    name: str,
    steps: Mapping[str, Step],
    links: list[Link],
    clock: Clock | None,
    inputs: Mapping[str, DataUnit],
    outputs: Mapping[str, DataUnit],
) -> Plan:
    """Build routing tables. Assumes the workflow was validated."""
    index = {step_name: i for i, step_name in enumerate(steps)}
    step_list = list(steps.values())
    out_routes: list[dict[str, list[Route]]] = [{} for _ in step_list]
    input_routes: dict[str, list[Route]] = {}
    connected: list[list[str]] = [[] for _ in step_list]
    capacity: list[int | None] = [None] * len(step_list)
    bounded = 0
    collectors = _collectors(links)
    for link in links:
        source_step, source_port = parse_endpoint(link.source)
        target_step, target_port = parse_endpoint(link.target)
        bound = -1
        if link.max_iterations is not None:
            bound, bounded = bounded, bounded + 1
        if target_step == "outputs":
            target, file_unit = -1, outputs[target_port].awaits_set
        else:
            target = index[target_step]
            template: Any = step_list[target].inputs[target_port]
            file_unit = template.awaits_set
            if target_port not in connected[target]:
                connected[target].append(target_port)
            limit = link.maxsize or (template.maxsize if isinstance(template, StreamUnit) else None)
            if limit is not None:
                capacity[target] = limit if capacity[target] is None else min(capacity[target] or limit, limit)
        route = Route(link, target, target_port, type(link) is Link, bound, file_unit, collectors.get(id(link)))
        if source_step == "inputs":
            input_routes.setdefault(source_port, []).append(route)
        else:
            out_routes[index[source_step]].setdefault(source_port, []).append(route)

    plans = [
        StepPlan(
            step=step,
            index=i,
            inputs={port: run_unit(t, f"{step.name}.{port}") for port, t in step.inputs.items()},
            outputs={port: run_unit(t, f"{step.name}.{port}") for port, t in step.outputs.items()},
            routes={port: tuple(r) for port, r in out_routes[i].items()},
            connected=tuple(connected[i]),
            required=step.required_inputs,
            capacity=capacity[i],
            invoke=wrap_invoke(step, clock),
        )
        for i, step in enumerate(step_list)
    ]
    sources = [i for i, s in enumerate(step_list) if not s.inputs and s.trigger.fires_on_input]
    timers = [i for i, s in enumerate(step_list) if isinstance(s.trigger, Interval)]
    return Plan(
        name=name,
        workflow_inputs={n: run_unit(u, f"inputs.{n}") for n, u in inputs.items()},
        workflow_outputs={n: run_unit(u, f"outputs.{n}") for n, u in outputs.items()},
        steps=plans,
        input_routes={k: tuple(v) for k, v in input_routes.items()},
        sources=sources,
        timers=timers,
        bounded_links=bounded,
    )


def _collectors(links: list[Link]) -> dict[int, Collector]:
    """Slots of the collecting links, grouped by the step input they feed (by link identity)."""
    groups: dict[str, list[Link]] = {}
    for link in links:
        if link.fan_in in COLLECTING:
            groups.setdefault(link.target, []).append(link)
    found: dict[int, Collector] = {}
    for group in groups.values():
        keys = None
        if group[0].fan_in == "collect_dict":
            sources = [parse_endpoint(link.source) for link in group]
            steps_ = [step for step, _ in sources]
            # Keyed by source step; by `step.port` when one step feeds the input twice.
            keys = tuple(steps_) if len(set(steps_)) == len(steps_) else tuple(link.source for link in group)
        for slot, link in enumerate(group):
            found[id(link)] = Collector(slot, len(group), keys)
    return found
