"""`nanobrain health`: check the components a deployment uses and exit non-zero if one is down."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .health import HealthMonitor, HealthReport, database_check, http_check, redis_check


def health(
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            envvar="NANOBRAIN_DATABASE_URL",
            help="Database URL to check (default: SQLite under NANOBRAIN_HOME).",
        ),
    ] = None,
    no_database: Annotated[bool, typer.Option("--no-database", help="Do not check a database.")] = False,
    redis: Annotated[list[str] | None, typer.Option("--redis", help="Redis URL to PING (repeatable).")] = None,
    remote: Annotated[
        list[str] | None,
        typer.Option("--remote", help="URL of a remote agent or server that must answer GET (repeatable)."),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds each check may take.", min=0.001)] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check the database, Redis and remote agents; exit 1 if any of them is unhealthy."""
    monitor = HealthMonitor(timeout=timeout)
    if not no_database:
        monitor.add("database", database_check(database or _default_database()))
    for index, url in enumerate(redis or ()):
        monitor.add(f"redis {index + 1}" if len(redis or ()) > 1 else "redis", redis_check(url))
    for index, url in enumerate(remote or ()):
        monitor.add(f"remote {index + 1}" if len(remote or ()) > 1 else "remote", http_check(url))
    if not monitor.names:
        Console(stderr=True).print(Text("error: nothing to check (give --redis or --remote)", style="bold red"))
        raise typer.Exit(1)
    report = asyncio.run(monitor.check())
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print(report)
    if not report.ok:
        raise typer.Exit(1)


def _default_database() -> str:
    from ..infrastructure.data.home import default_database_url

    return default_database_url()


def _print(report: HealthReport) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    for name, result in report.checks.items():
        mark = Text("ok", style="green") if result.ok else Text("FAIL", style="bold red")
        table.add_row(mark, name, result.detail)
    console = Console()
    console.print(table)
    if not report.ok:
        Console(stderr=True).print(Text(f"unhealthy: {', '.join(report.failing)}", style="bold red"))


__all__ = ["health"]
