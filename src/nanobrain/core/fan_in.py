"""How several links into one step input combine (merge or collect), checked when a workflow is built."""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import Problem
from .links import COLLECTING, ConditionalLink, Link, parse_endpoint
from .typing_utils import is_compatible


def fan_in_problems(links: list[Link]) -> list[Problem]:
    """Several links into one step input must say how they combine (merge or collect).

    Conditional links (a router's exclusive branches) and bounded links (a loop's way back)
    merge without saying so; plain links into one input are ambiguous: a join would fire once
    per value and keep only the last branch's.
    """
    into: dict[str, list[Link]] = {}
    found: list[Problem] = []
    for link in links:
        try:
            target_step, _ = parse_endpoint(link.target)
        except ValueError:
            continue  # reported with the link's other problems
        if target_step != "outputs":
            into.setdefault(link.target, []).append(link)
        elif link.fan_in in COLLECTING:
            found.append(Problem(f"links[{link.source} -> {link.target}]", "only a step input can collect values"))
    successors: dict[str, set[str]] = {}
    for link in links:
        try:
            successors.setdefault(parse_endpoint(link.source)[0], set()).add(parse_endpoint(link.target)[0])
        except ValueError:
            continue
    for target, group in into.items():
        modes = {link.fan_in for link in group if link.fan_in is not None}
        sources = _names(link.source for link in group)
        if len(modes) > 1:
            found.append(
                Problem(
                    f"links[-> {target}]",
                    f"the links into {target!r} ({sources}) mix fan_in {', '.join(sorted(modes))}: give them all one",
                )
            )
            continue
        if len(group) < 2 or modes:
            continue
        if any(isinstance(link, ConditionalLink) or link.max_iterations is not None for link in group):
            continue
        if _closes_cycle(parse_endpoint(target)[0], group, successors):
            continue  # a loop's way back merges with its entry (its bound is checked as a cycle)
        found.append(
            Problem(
                f"links[-> {target}]",
                f"{len(group)} links feed {target!r} ({sources}): say how they combine — fan_in='collect' "
                f"gives the step one list with a value from each (workflow.collect({target!r}, ...)), "
                "fan_in='merge' fires the step once per arriving value",
            )
        )
    return found


def _closes_cycle(step: str, group: list[Link], successors: Mapping[str, set[str]]) -> bool:
    """Whether one of the links into `step` comes from a step that `step` itself leads to."""
    sources = {parse_endpoint(link.source)[0] for link in group}
    seen = {step}
    frontier = [step]
    while frontier:
        for nxt in successors.get(frontier.pop(), ()):
            if nxt in sources:
                return True
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return False


def mismatch_hint(link: Link, source_type: Any, target_type: Any) -> str:
    if link.fan_in in COLLECTING:
        return " (each item of the collected value)"
    item = element_type(target_type)
    if item is not None and is_compatible(source_type, item):
        return " (to collect values from several links into it, link with fan_in='collect')"
    return ""


def element_type(tp: Any) -> Any:
    """The type of one collected item for a `list[T]` / `dict[str, T]` input (None: any)."""
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (list, tuple, Sequence) and args:
        return args[0]
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    return None



def _names(names: Iterable[str], limit: int = 10) -> str:
    """`a, b, c` for a message: the first `limit` names, then how many more."""
    listed = list(names)
    more = len(listed) - limit
    return ", ".join(listed[:limit]) + (f" and {more} more" if more > 0 else "")
