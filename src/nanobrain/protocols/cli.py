"""`nanobrain mcp FILE.yaml`: serve a workflow as an MCP tool over stdio."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def mcp_command(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Workflow YAML files; each becomes one MCP tool.")],
    name: Annotated[str, typer.Option("--name", help="The server's name as clients see it.")] = "nanobrain",
) -> None:
    """Serve workflows as MCP tools over stdio (for MCP clients that start a command)."""
    import asyncio

    from ..interfaces.cli import _load, _reporting
    from .mcp.server import mcp_server, serve_stdio

    with _reporting(ctx, files[0] if len(files) == 1 else None):
        workflows = [_load(file) for file in files]
        server = mcp_server(workflows, name=name)

    async def serve() -> None:
        try:
            await serve_stdio(server)
        finally:
            for workflow in workflows:
                await workflow.aclose()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
