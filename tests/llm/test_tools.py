"""Tools from functions and steps: schema from hints and docstrings, validation, error results."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import nanobrain as nb
from nanobrain.llm import Tool, tool


class Point(BaseModel):
    x: float
    y: float


def distance(a: Point, b: Point, scale: float = 1.0) -> float:
    """Distance between two points.

    Args:
        a: the first point
        b: the second point
        scale: multiply the result by this
    """
    return ((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5 * scale


def test_schema_comes_from_type_hints_and_docstring() -> None:
    spec = Tool.from_function(distance).spec
    assert spec.name == "distance"
    assert spec.description == "Distance between two points."
    params = spec.parameters
    assert params["required"] == ["a", "b"]
    assert params["properties"]["scale"]["default"] == 1.0
    assert params["properties"]["a"]["description"] == "the first point"
    assert params["additionalProperties"] is False
    assert "Point" in str(params["$defs"])


async def test_arguments_are_validated_before_the_call() -> None:
    t = Tool.from_function(distance)
    ok = await t.call({"a": {"x": 0, "y": 0}, "b": {"x": 3, "y": 4}})
    assert (ok.content, ok.is_error) == ("5.0", False)
    bad = await t.call({"a": {"x": 0}, "b": {"x": 3, "y": 4}, "extra": 1})
    assert bad.is_error
    assert "a.y: Field required" in bad.content and "extra: Extra inputs are not permitted" in bad.content


async def test_exceptions_become_error_results() -> None:
    @tool(name="divide", description="Divide a by b.")
    def divide(a: float, b: float) -> float:
        return a / b

    result = await divide.call({"a": 1, "b": 0})
    assert result.is_error and "ZeroDivisionError" in result.content
    assert divide.spec.description == "Divide a by b."


async def test_results_are_serialized_for_the_model() -> None:
    async def origin() -> Point:
        return Point(x=0, y=0)

    def pairs() -> dict:
        return {"a": [1, 2]}

    assert (await Tool.from_function(origin).call({})).content == '{"x":0.0,"y":0.0}'
    assert (await Tool.from_function(pairs).call({})).content == '{"a": [1, 2]}'


async def test_step_and_workflow_as_tools() -> None:
    @nb.step
    def shout(text: str, times: int = 1) -> str:
        """Shout the text."""
        return text.upper() * times

    workflow = nb.Workflow.sequence(shout, name="shouter", description="Shouts.")
    as_step = Tool.from_step(shout)
    as_workflow = Tool.from_step(workflow)
    assert as_step.spec.parameters["required"] == ["text"]
    assert (await as_step.call({"text": "a", "times": 2})).content == "AA"
    assert (await as_workflow.call({"text": "b"})).content == "B"
    assert as_workflow.description == "Shouts."


def test_bad_tools_are_rejected() -> None:
    def variadic(*args: int) -> int:
        return 0

    with pytest.raises(TypeError, match="args"):
        Tool.from_function(variadic)
    with pytest.raises(ValueError, match="tool name"):
        Tool.from_function(distance, name="has space")


async def test_a_tool_takes_a_raw_json_schema_as_given_and_may_return_its_own_result() -> None:
    from nanobrain.llm.tools import Tool, ToolResult

    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"], "title": "x"}

    def lookup(**arguments: object) -> ToolResult:
        return ToolResult(f"no entry for {arguments['q']}", is_error=True)

    remote = Tool("lookup", "Look up", schema, lookup)
    assert remote.spec.parameters == {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    assert await remote.call({"q": "zebra"}) == ToolResult("no entry for zebra", is_error=True)
    assert (await remote.call([1])).is_error  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must describe an object"):
        Tool("bad", "Bad", {"type": "string"}, lookup)
