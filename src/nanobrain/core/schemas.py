"""JSON Schemas of a step's (or workflow's) inputs and outputs.

One source for everything that describes a step to the outside: tool arguments for a model,
the HTTP API's request and response bodies, MCP tool schemas and A2A agent cards.
pydantic is imported when a schema is first asked for, so `import nanobrain` stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .data_units import MISSING, DataUnit

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .steps import Step


def units_model(name: str, units: Mapping[str, DataUnit], *, required: bool = True) -> type[BaseModel]:
    """A pydantic model with one field per unit (its type, or any value; its default when it has one).

    With `required=False` every field is optional (outputs: a run sets those it reaches).
    Unknown fields are refused, so a misspelt input is an error rather than ignored.
    """
    from pydantic import ConfigDict, Field, create_model

    fields: dict[str, Any] = {}
    for port, unit in units.items():
        annotation: Any = unit.type if unit.type is not None else Any
        if unit.default is not MISSING:
            default: Any = unit.default
        elif required:
            default = ...
        else:
            default = None
        fields[port] = (annotation, Field(default))
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


def inputs_model(step: Step) -> type[BaseModel]:
    """The model that validates a step's inputs (required inputs are required fields)."""
    return units_model(f"{step.name}_inputs", step.inputs)


def outputs_model(step: Step) -> type[BaseModel]:
    return units_model(f"{step.name}_outputs", step.outputs, required=False)


def _schema(model: type[BaseModel], title: str, description: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["title"] = title
    if description:
        schema["description"] = description
    return schema


def input_schema(step: Step) -> dict[str, Any]:
    """The JSON Schema (an object) of a step's or workflow's inputs."""
    return _schema(inputs_model(step), f"{step.name} inputs", step.description)


def output_schema(step: Step) -> dict[str, Any]:
    """The JSON Schema (an object) of a step's or workflow's outputs; every output is optional,
    since a run sets only the outputs its data reaches."""
    return _schema(outputs_model(step), f"{step.name} outputs", "")


__all__ = ["input_schema", "inputs_model", "output_schema", "outputs_model", "units_model"]
