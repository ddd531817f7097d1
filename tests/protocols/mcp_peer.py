"""A misbehaving MCP server for tests: `python -m tests.protocols.mcp_peer` (stdio).

Its tools hang, crash the process, or raise, so that the client's handling of each is tested.
"""

from __future__ import annotations

import asyncio
import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("misbehaving")


@server.tool()
async def hang(seconds: float = 3600) -> str:
    """Sleep (far longer than any test waits)."""
    await asyncio.sleep(seconds)
    return "woke up"


@server.tool()
def crash() -> str:
    """End the server process abruptly."""
    os._exit(3)


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


if __name__ == "__main__":
    server.run("stdio")
