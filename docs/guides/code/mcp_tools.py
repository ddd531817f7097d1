"""MCP both ways: a workflow served as an MCP tool, and an MCP server's tools used by an agent.

`nanobrain mcp FILE.yaml` serves workflows over stdio and `nanobrain serve` at `/mcp`; here the
server is built in process (`mcp_server`) and called with the official `mcp` client. The agent uses
`mcp-server-time` (a third-party MCP server from PyPI) over stdio; its model is scripted here, so
the guide runs offline — pass any model string instead.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from mcp import Client

import nanobrain as nb
from nanobrain.agents.agent import Agent
from nanobrain.llm import ScriptedModel, call
from nanobrain.protocols.mcp import MCPToolset, mcp_server

from .first_workflow import build

TIME_SERVER = [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]  # pip install mcp-server-time


async def call_workflow_as_tool(text: str) -> dict[str, Any]:
    """List the tools of a server made of the first workflow, and call it."""
    async with Client(mcp_server(build())) as client:
        listed = [tool.name for tool in (await client.list_tools()).tools]
        result = await client.call_tool("first", {"text": text})
        return {"tools": listed, "result": result.structured_content}


def clock(model: Any) -> nb.Workflow:
    """An agent whose one tool is the time server's `get_current_time`."""
    toolset = MCPToolset(TIME_SERVER, tools=["get_current_time"], timeout=30)
    wf = nb.Workflow("clock", inputs={"message": str}, outputs={"reply": str})
    wf.add(Agent("clock", model=model, system="Answer with the tools.", tools=[toolset]))
    wf.link("inputs.message", "clock.message")
    wf.link("clock.reply", "outputs.reply")
    return wf


def scripted() -> ScriptedModel:
    """The model's part: ask the tool for the time in Tokyo, then answer with what it returned."""
    return ScriptedModel(
        [call("get_current_time", timezone="Asia/Tokyo")],
        respond=lambda request: f"The time server said: {request.messages[-1].content}",
    )


async def main() -> None:
    print(await call_workflow_as_tool("  hello   mcp "))  # {'tools': ['first'], 'result': {'result': 'HELLO MCP!'}}
    workflow = clock(scripted())
    try:
        print(await workflow.run(message="What time is it in Tokyo?"))
    finally:
        await workflow.aclose()  # stops the time server


if __name__ == "__main__":
    asyncio.run(main())
