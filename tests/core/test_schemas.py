"""JSON Schemas of steps' and workflows' inputs and outputs, from core."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from nanobrain import Step, Workflow, input_schema, output_schema, step
from nanobrain.core.schemas import inputs_model


@step
def greet(name: str, times: int = 1) -> str:
    return " ".join([f"hi {name}"] * times)


def test_input_schema_has_types_required_fields_and_defaults():
    schema = input_schema(greet)
    assert schema["type"] == "object"
    assert schema["properties"]["name"]["type"] == "string"
    assert schema["properties"]["times"] == {"default": 1, "title": "Times", "type": "integer"}
    assert schema["required"] == ["name"]
    assert schema["additionalProperties"] is False


def test_output_schema_makes_every_output_optional():
    schema = output_schema(greet)
    assert set(schema["properties"]) == {"result"}
    assert "required" not in schema


def test_workflow_schema_is_the_workflow_inputs_with_its_description():
    wf = Workflow.sequence(greet, name="greeter", description="Greets people.")
    schema = input_schema(wf)
    assert schema["title"] == "greeter inputs"
    assert schema["description"] == "Greets people."
    assert schema["required"] == ["name"]


def test_untyped_inputs_accept_any_value_and_the_model_validates():
    class Loose(Step):
        inputs = {"anything": None}
        outputs = {"out": None}

        async def process(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {"out": inputs["anything"]}

    assert input_schema(Loose())["properties"]["anything"] == {"title": "Anything"}
    model = inputs_model(greet)
    assert model.model_validate({"name": "a"}).times == 1  # type: ignore[attr-defined]
    with pytest.raises(pydantic.ValidationError, match="times"):
        model.model_validate({"name": "a", "times": "many"})
    with pytest.raises(pydantic.ValidationError, match="extra"):
        model.model_validate({"name": "a", "nmae": "typo"})
