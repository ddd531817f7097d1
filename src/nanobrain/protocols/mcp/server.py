"""NanoBrain workflows (and tools) as an MCP server, over the official `mcp` SDK.

Each workflow is one MCP tool: its input schema comes from `core.schemas`, its output schema
too (the result carries `structured_content` with the outputs); progress notifications come
from the run's events (one per finished step). Serve it over stdio (`nanobrain mcp FILE.yaml`)
or Streamable HTTP (`mcp_streamable_http_app`, mounted at `/mcp` by `nanobrain serve`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ...core.events import StepFinished
from ...core.steps import Step
from ...llm.tools import Tool, to_text
from ...optional import require

if TYPE_CHECKING:
    from mcp.server.lowlevel import Server
    from starlette.applications import Starlette

    from ...core.workflow import Workflow


def _entries(items: Iterable[Workflow | Step | Tool] | Mapping[str, Workflow | Step | Tool]) -> dict[str, Any]:
    pairs = items.items() if isinstance(items, Mapping) else ((None, item) for item in items)
    found: dict[str, Any] = {}
    for name, item in pairs:
        key = name or item.name
        if key in found:
            raise ValueError(f"two MCP tools are named {key!r}")
        found[key] = item
    return found


def mcp_server(
    items: Workflow | Step | Tool | Iterable[Workflow | Step | Tool] | Mapping[str, Workflow | Step | Tool],
    *,
    name: str = "nanobrain",
    instructions: str | None = None,
) -> Server[Any]:
    """An MCP server (the SDK's low-level `Server`) whose tools are the given workflows, steps and tools."""
    require("mcp", extra="mcp", purpose="an MCP server")
    import mcp_types as types
    from mcp.server.lowlevel import Server

    if isinstance(items, (Step, Tool)):
        items = [items]
    entries = _entries(items)
    from ...core.schemas import input_schema, output_schema

    described: list[types.Tool] = []
    for key, item in entries.items():
        if isinstance(item, Tool):
            spec = item.spec
            described.append(types.Tool(name=key, description=spec.description, input_schema=spec.parameters))
        else:
            described.append(
                types.Tool(
                    name=key,
                    description=item.description or f"Run the {item.name} workflow",
                    input_schema=input_schema(item),
                    output_schema=output_schema(item),
                )
            )

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=described)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        item = entries.get(params.name)
        if item is None:
            return _error(f"unknown tool {params.name!r} (tools: {', '.join(entries) or 'none'})")
        arguments = dict(params.arguments or {})
        if isinstance(item, Tool):
            result = await item.call(arguments)
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=result.content)], is_error=result.is_error
            )
        return await _run_step(prepared[params.name], arguments, ctx)

    prepared = {key: _Prepared(item) for key, item in entries.items() if not isinstance(item, Tool)}
    return Server(name, instructions=instructions, on_list_tools=list_tools, on_call_tool=call_tool)


def _error(text: str) -> Any:
    import mcp_types as types

    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


class _Prepared:
    """What each call of one step needs, built once: its input and output models, the workflow."""

    def __init__(self, step: Step) -> None:
        from ...core.schemas import inputs_model, outputs_model
        from ...core.workflow import Workflow

        self.step = step
        self.inputs = inputs_model(step)
        self.outputs = outputs_model(step)
        self.workflow = step if isinstance(step, Workflow) else Workflow.sequence(step, name=step.name)
        self.total = float(len(self.workflow.walk()) - 1) or None


async def _run_step(prepared: _Prepared, arguments: dict[str, Any], ctx: Any) -> Any:
    """Validate the arguments, run the step, report each finished step as progress."""
    import mcp_types as types
    from pydantic import ValidationError

    step, workflow, total = prepared.step, prepared.workflow, prepared.total
    try:
        inputs = prepared.inputs.model_validate(arguments)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
        return _error(f"invalid arguments for {step.name}: {problems}")
    values = {name: getattr(inputs, name) for name in type(inputs).model_fields}
    finished = 0
    outputs: dict[str, Any] = {}
    try:
        async for event in workflow.stream(values):
            if isinstance(event, StepFinished):
                finished += 1
                await ctx.session.report_progress(float(finished), total, f"{event.path}/{event.step} finished")
            elif event.type == "run_finished":
                outputs = dict(event.outputs)  # type: ignore[attr-defined]
    except Exception as exc:  # the caller hears about it as a tool error
        return _error(f"{step.name} failed: {type(exc).__name__}: {exc}")
    structured = json.loads(prepared.outputs.model_validate(outputs).model_dump_json(exclude_none=True))
    text = to_text(next(iter(outputs.values()))) if len(outputs) == 1 else to_text(structured)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=structured, is_error=False
    )


def mcp_streamable_http_app(server: Server[Any], *, path: str = "/mcp", host: str = "127.0.0.1") -> Starlette:
    """The Streamable HTTP ASGI app of `server` (the SDK's; runs on its own with uvicorn).

    Mounted in another app, its lifespan does not run by itself: run `server.session_manager.run()`
    in the host app's lifespan (`nanobrain serve` does).
    """
    return server.streamable_http_app(streamable_http_path=path, host=host)


async def serve_stdio(server: Server[Any]) -> None:
    """Serve over this process's stdin/stdout until the client closes them."""
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


__all__ = ["mcp_server", "mcp_streamable_http_app", "serve_stdio"]
