"""Workflow inputs from the command line: `--input NAME=VALUE`, `--input-json`, checked against a workflow."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.workflow import Workflow


class UsageProblem(Exception):
    """A mistake on the command line that typer cannot see (like `--input` without `=`)."""


def parse_inputs(pairs: list[str], raw_json: str | None) -> dict[str, Any]:
    """`--input k=v` pairs (string values) with the `--input-json` object merged over them."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageProblem(f"--input expects NAME=VALUE, got {pair!r}")
        values[name] = value
    if raw_json is not None:
        text = raw_json
        if raw_json.startswith("@"):
            text = _read_input_file(raw_json[1:])
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageProblem(f"--input-json is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise UsageProblem(
                f'--input-json must be a JSON object like {{"name": "value"}}, got {type(data).__name__}'
            )
        values.update(data)
    return values


def _read_input_file(name: str) -> str:
    """The text of `--input-json @FILE`: a regular file within the size limit, as UTF-8."""
    from ..config.files import MAX_INPUT_BYTES, UnreadableFile, read_bytes

    try:
        return read_bytes(name, MAX_INPUT_BYTES).decode("utf-8")
    except UnreadableFile as exc:
        raise UsageProblem(f"--input-json: cannot read {name!r}: {exc}") from None
    except UnicodeDecodeError:
        raise UsageProblem(f"--input-json: {name!r} is not UTF-8 text") from None


def check_inputs(workflow: Workflow, values: Mapping[str, Any]) -> None:
    """Refuse inputs the workflow does not declare, and missing required ones, naming both."""
    declared = workflow.inputs
    unknown = [name for name in values if name not in declared]
    if unknown:
        raise UsageProblem(
            f"workflow {workflow.name!r} has no input {', '.join(map(repr, unknown))} "
            f"(its inputs: {', '.join(declared) or 'none'})"
        )
    # Units that keep their value elsewhere (persistent) may have one stored: the run checks those.
    missing = [
        name for name in workflow.required_inputs if name not in values and not declared[name].awaits_set
    ]
    if missing:
        raise UsageProblem(
            f"workflow {workflow.name!r} needs input {', '.join(map(repr, missing))} "
            f"(pass {' '.join(f'--input {name}=...' for name in missing)})"
        )
