"""`nanobrain agents list FILE.yaml ... [--remote URL ...]`: the agents a workflow uses, remote A2A
agents with their cards' skills and health."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

agents_app = typer.Typer(help="Agents: the local and remote (A2A) agents of workflows.", no_args_is_help=True)


@agents_app.command("list")
def list_agents(
    ctx: typer.Context,
    files: Annotated[list[Path] | None, typer.Argument(help="Workflow YAML files.", show_default=False)] = None,
    remote: Annotated[
        list[str] | None, typer.Option("--remote", help="Also list the A2A agent at this URL (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for a remote agent's card.")] = 5.0,
) -> None:
    """List agents: each workflow's agent steps and remote A2A agents (cards fetched, health checked)."""
    from ..interfaces.cli import _load, _out, _reporting

    with _reporting(ctx, files[0] if files and len(files) == 1 else None):
        registry = _registry([_load(f) for f in files or []], remote or [], timeout)
        rows = asyncio.run(_described(registry))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table("name", "where", "skills / tools", "healthy", "description")
    for row in rows:
        health = "yes" if row["healthy"] else f"no: {row['problem']}"
        table.add_row(row["name"], row["where"], ", ".join(row["skills"]), health, row["description"])
    _out().print(table)


def _registry(workflows: list[Any], urls: list[str], timeout: float) -> Any:
    from ..protocols.a2a.client import A2AAgentStep
    from .agent import Agent
    from .registry import AgentRegistry

    registry = AgentRegistry(timeout=timeout)
    for workflow in workflows:
        for step in workflow.walk():
            name = f"{workflow.name}/{step.name}"
            if isinstance(step, Agent):
                registry.add(name, step, skills=step.tools)
            elif isinstance(step, A2AAgentStep):
                registry.add(name, step.remote)
    for url in urls:
        registry.add_remote(url, url, connect_timeout=timeout)
    return registry


async def _described(registry: Any) -> list[dict[str, Any]]:
    try:
        await registry.check()
        return [entry.describe() for entry in registry.entries()]
    finally:
        for entry in registry.entries():
            if entry.remote:
                await entry.target.aclose()
