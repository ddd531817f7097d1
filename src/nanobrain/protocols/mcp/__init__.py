"""MCP through the official `mcp` SDK: servers' tools as agent tools, workflows as an MCP server."""

from __future__ import annotations

from typing import Any

__all__ = ["MCPServerConfig", "MCPToolset", "mcp_server", "mcp_streamable_http_app"]


def __getattr__(name: str) -> Any:
    # Lazy: `mcp` is an optional extra and heavy to import.
    if name == "MCPToolset":
        from .client import MCPToolset

        return MCPToolset
    if name == "MCPServerConfig":
        from .config import MCPServerConfig

        return MCPServerConfig
    if name in ("mcp_server", "mcp_streamable_http_app"):
        from . import server

        return getattr(server, name)
    raise AttributeError(name)
