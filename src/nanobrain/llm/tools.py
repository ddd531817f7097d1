"""Tools: plain functions (sync or async), steps, workflows and agents offered to a model.

The JSON schema comes from type hints and the docstring through pydantic; arguments are
validated before the call; a tool's exception goes back to the model as an error result.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from ..core.steps import Step
from .messages import ToolSpec


@dataclass(frozen=True, slots=True)
class ToolResult:
    content: str
    is_error: bool = False


class Tool:
    """Something a model can call: a name, a description, an argument schema and a callable.

    `arguments` is a pydantic model (arguments are validated before the call and passed as
    keywords) or a raw JSON Schema object (used as given, for tools described elsewhere such as
    an MCP server's: the callable gets the arguments as keywords and the tool validates them).
    The callable may return a `ToolResult` to say itself whether the outcome is an error.
    """

    def __init__(
        self,
        name: str,
        description: str,
        arguments: type[BaseModel] | Mapping[str, Any],
        call: Callable[..., Any],
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ValueError(f"tool name {name!r} must be 1-64 letters, digits, '_' or '-'")
        if isinstance(arguments, Mapping) and arguments.get("type", "object") != "object":
            raise ValueError(f"tool {name!r}: the argument schema must describe an object")
        self.name = name
        self.description = description
        self.arguments = arguments
        self._call = call

    @property
    def spec(self) -> ToolSpec:
        if isinstance(self.arguments, Mapping):
            schema = {"type": "object", "properties": {}, **self.arguments}
        else:
            schema = self.arguments.model_json_schema()
        schema.pop("title", None)
        return ToolSpec(self.name, self.description, schema)

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        """Validate the arguments, run the tool, and describe the outcome for the model."""
        if isinstance(self.arguments, Mapping):
            if not isinstance(arguments, dict):
                return ToolResult(f"invalid arguments for {self.name}: expected an object", is_error=True)
            return await self._invoke(arguments)
        try:
            parsed = self.arguments.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            return ToolResult(f"invalid arguments for {self.name}: {problems}", is_error=True)
        return await self._invoke({name: getattr(parsed, name) for name in type(parsed).model_fields})

    async def _invoke(self, arguments: dict[str, Any]) -> ToolResult:
        try:
            result = self._call(**arguments)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # the model hears about it and may try again
            return ToolResult(f"{self.name} failed: {type(exc).__name__}: {exc}", is_error=True)
        return result if isinstance(result, ToolResult) else ToolResult(to_text(result))

    @classmethod
    def from_function(cls, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> Tool:
        tool_name: str = name or getattr(fn, "__name__", None) or "tool"
        doc = inspect.getdoc(fn) or ""
        summary, param_docs = _parse_docstring(doc)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:
            hints = {}
        fields: dict[str, Any] = {}
        for parameter in inspect.signature(fn).parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(f"tool {tool_name!r}: *args and **kwargs cannot be described to a model")
            annotation = hints.get(parameter.name, Any)
            default = ... if parameter.default is parameter.empty else parameter.default
            from pydantic import Field

            fields[parameter.name] = (annotation, Field(default, description=param_docs.get(parameter.name)))
        model = create_model(
            f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
        )
        return cls(tool_name, description or summary or tool_name, model, fn)

    @classmethod
    def from_step(cls, step: Step, *, name: str | None = None, description: str | None = None) -> Tool:
        """A step, workflow or agent as a tool: its inputs are the arguments, its outputs the result."""
        from ..core.schemas import units_model

        model = units_model(f"{step.name}_arguments", step.inputs)

        async def run(**inputs: Any) -> Any:
            from ..core.workflow import Workflow

            outputs: Mapping[str, Any] | None
            if isinstance(step, Workflow):
                outputs = await step.invoke(inputs)
            else:
                outputs = await step.process(inputs)
            values = dict(outputs or {})
            return next(iter(values.values())) if len(values) == 1 else values

        return cls(name or step.name, description or step.description or step.name, model, run)


@runtime_checkable
class Toolset(Protocol):
    """A source of tools known only once it is opened (an MCP server, a remote agent).

    An agent opens its toolsets on first use (`tools()`, called once) and closes them with itself.
    """

    async def tools(self) -> list[Tool]: ...

    async def aclose(self) -> None: ...


def tool(fn: Callable[..., Any] | None = None, /, *, name: str | None = None, description: str | None = None) -> Any:
    """Make a tool from a function: `@tool` or `@tool(name=..., description=...)`."""
    if fn is not None:
        return Tool.from_function(fn)
    return lambda function: Tool.from_function(function, name=name, description=description)


def as_tool(value: Tool | Step | Callable[..., Any]) -> Tool:
    """Accept a Tool, a step (workflow, agent) or a function."""
    if isinstance(value, Tool):
        return value
    if isinstance(value, Step):
        fn = getattr(value, "fn", None)
        if fn is not None and not isinstance(value, _agent_type()):
            return Tool.from_function(fn)
        return Tool.from_step(value)
    if callable(value):
        return Tool.from_function(value)
    raise TypeError(f"cannot use {type(value).__name__} as a tool")


def _agent_type() -> type:
    from ..agents.agent import Agent

    return Agent


def to_text(value: Any) -> str:
    """A tool result as text for the model."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError):
        return str(value)


def _json_default(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else str(value)


_PARAM_LINE = re.compile(r"^\s*(?::param\s+)?(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph, and parameter descriptions from an `Args:` section or `:param x:` lines."""
    summary = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    params: dict[str, str] = {}
    in_args = False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped.lower() in ("args:", "arguments:", "parameters:"):
            in_args = True
            continue
        if in_args and stripped and not line.startswith((" ", "\t")):
            in_args = False
        if in_args or stripped.startswith(":param"):
            match = _PARAM_LINE.match(stripped)
            if match:
                params[match.group(1)] = match.group(2).strip()
    if summary.lower().startswith(("args:", ":param")):
        summary = ""
    return summary, params
