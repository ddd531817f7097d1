"""Shaping the problems found while loading: located, concise, and never showing a secret."""

from __future__ import annotations

import re
from typing import Any

from ..core.errors import Problem
from ..core.links import parse_endpoint
from .models import LinkConfig
from .yaml_source import Location, Source


def redact(problems: list[Problem], secrets: dict[str, str]) -> None:
    """Show `${VAR}` wherever a value taken from the environment would appear in a message, and
    mask what looks like a secret written in the document itself (a URL's password, a token)."""
    from ..infrastructure.security.redaction import redact as mask_secrets

    # Longest first, so that a value containing another is replaced whole. Very short values are
    # left alone (replacing every "1" would garble messages); the schema's errors hide them anyway.
    pairs = sorted(((v, r) for v, r in secrets.items() if len(v) >= 4), key=lambda p: -len(p[0]))
    for problem in problems:
        for value, reference in pairs:
            for shown in {value, repr(value)[1:-1]}:
                problem.message = problem.message.replace(shown, reference)
                problem.where = problem.where.replace(shown, reference)
        problem.message = mask_secrets(problem.message)


def fed_by(link: LinkConfig) -> set[str]:
    """Where the graph check reports a target of `link` that nothing feeds (the link could not be built)."""
    try:
        owner, port = parse_endpoint(link.target)
    except ValueError:
        return set()
    # A step fed only by that link is also unreachable.
    return {f"outputs.{port}"} if owner == "outputs" else {f"steps.{owner}.inputs.{port}", f"steps.{owner}"}


LINK_WHERE = re.compile(r"^links\[(.*) -> (.*)\]$")
CYCLE = re.compile(r"cycle without an iteration bound: (.*) \(")


def problem_owners(problem: Problem) -> set[str]:
    """The steps (or `inputs`/`outputs`) a graph problem is about, from where it is."""
    match = LINK_WHERE.match(problem.where)
    if match:
        return {endpoint.partition(".")[0] for endpoint in match.groups()}
    if problem.where == "links":
        cycle = CYCLE.search(problem.message)
        return set(cycle.group(1).split(" -> ")) if cycle else set()
    head, _, rest = problem.where.partition(".")
    return {rest.partition(".")[0]} if head == "steps" else {head}


def caused_by(problem: Problem, broken: set[str]) -> bool:
    return not broken.isdisjoint(problem_owners(problem))


def describe(error: Any, written: str | None = None) -> str:
    """Pydantic's error in our words; `written` is the text before `${VAR}` expansion, shown instead of the value."""
    kind, message = error["type"], error["msg"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field (check the spelling; `nanobrain schema` lists the fields)"
    value = error.get("input")
    if written is not None and isinstance(value, str):
        shown = repr(written)
    elif isinstance(value, dict | list):
        shown = type(value).__name__
    else:
        try:
            shown = repr(value)
        except ValueError:  # an int too long to print (`0x` and 5,000 digits)
            shown = f"{type(value).__name__} too long to show"
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{message} (got {shown})"


def locate(problem: Problem, link_index: dict[tuple[str, str], int], source: Source, prefix: Location) -> Problem:
    """Give a graph problem found by the engine the file and line of the config that caused it."""
    match = LINK_WHERE.match(problem.where)
    location: Location
    if match:
        index = link_index.get((match.group(1), match.group(2)))
        location = ("links", index) if index is not None else ("links",)
    else:
        location = tuple(problem.where.split(".")[:2]) if problem.where else ()
    return source.problem((*prefix, *location), problem.message)
