"""`nanobrain agents list FILE.yaml ... [--remote URL ...] [--registered]`: the agents a workflow uses,
remote A2A agents (by URL, or registered in the service registry) with their cards' skills and health."""

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
    registered: Annotated[
        bool, typer.Option("--registered", help="Also list the A2A agents of the service registry.")
    ] = False,
    services: Annotated[
        str | None,
        typer.Option("--registry", envvar="NANOBRAIN_REGISTRY_URL",
                     help="The service registry for --registered (redis://..., postgresql://...)."),
    ] = None,
) -> None:
    """List agents: each workflow's agent steps and remote A2A agents (cards fetched, health checked)."""
    from ..interfaces.cli import UsageProblem, _load, _out, _reporting

    with _reporting(ctx, files[0] if files and len(files) == 1 else None):
        if registered and not services:
            raise UsageProblem("--registered needs a service registry: set NANOBRAIN_REGISTRY_URL or pass --registry")
        registry = _registry(
            [_load(f) for f in files or []], remote or [], timeout, services if registered else None
        )
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


def _registry(workflows: list[Any], urls: list[str], timeout: float, services: str | None = None) -> Any:
    from ..protocols.a2a.client import A2AAgentStep
    from .agent import Agent
    from .registry import AgentRegistry

    registry = AgentRegistry(timeout=timeout, services=services)
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
    from ..infrastructure.security.redaction import mask_url

    try:
        if registry.services is not None:
            await registry.discover()
        await registry.check()
        return [{**entry.describe(), "where": mask_url(entry.describe()["where"])} for entry in registry.entries()]
    finally:
        await registry.aclose()
