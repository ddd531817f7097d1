"""`nanobrain services list [--type T]`: the live services of the service registry (URLs masked)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

import typer

services_app = typer.Typer(
    help="Services: the replicas and A2A agents registered in the service registry.", no_args_is_help=True
)


@services_app.command("list")
def list_services(
    ctx: typer.Context,
    type_: Annotated[
        str | None, typer.Option("--type", "-t", help="Only services of this type (replica, a2a-agent, ...).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Only services registered under this name.")] = None,
    registry: Annotated[
        str | None,
        typer.Option("--registry", envvar="NANOBRAIN_REGISTRY_URL",
                     help="The service registry (redis://HOST:PORT/DB, postgresql://USER@HOST/DB, sqlite:///PATH)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of one line per service.")] = False,
) -> None:
    """List live services (expired ones are not shown); URLs and secret-looking values are masked."""
    from .cli import UsageProblem, _err, _reporting

    with _reporting(ctx):
        if not registry:
            raise UsageProblem(
                "no service registry: set NANOBRAIN_REGISTRY_URL or pass --registry "
                "(redis://HOST:PORT/DB, postgresql://USER@HOST/DB or sqlite:///PATH)"
            )
        rows = asyncio.run(_discover(registry, type_, name))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        which = f" of type {type_!r}" if type_ else ""
        _err().print(f"no live services{which}", style="dim", highlight=False)
        return
    # One line per service (not a table): URLs stay whole, whatever the terminal's width.
    now = time.time()
    type_width = max(len(row["type"]) for row in rows)
    name_width = max(len(row["name"]) for row in rows)
    for row in rows:
        left = f"{max(0.0, row['expires_at'] - now):.1f}s" if row["expires_at"] is not None else "-"
        typer.echo(f"{row['type']:<{type_width}}  {row['name']:<{name_width}}  {row['url']}  "
                   f"(expires in {left}, id {row['id']})")  # fmt: skip


async def _discover(url: str, type_: str | None, name: str | None) -> list[dict[str, Any]]:
    from ..infrastructure.services.registry import open_registry

    async with open_registry(url) as registry:
        return [record.describe() for record in await registry.discover(type_, name)]
