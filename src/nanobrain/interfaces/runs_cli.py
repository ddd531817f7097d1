"""`nanobrain runs`: list, show, resume and feed durable runs.

The journal is the default one (SQLite under NANOBRAIN_HOME, or NANOBRAIN_DATABASE_URL), or the
database given with `--database`.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from ..core.journal import RunRecord
    from ..infrastructure.data.journal import SqlJournalStore

runs_app = typer.Typer(
    help="Durable runs: list them, see one, resume one after a crash, send input to a waiting one.",
    no_args_is_help=True,
)

DatabaseOption = Annotated[
    str | None,
    typer.Option("--database", envvar="NANOBRAIN_DATABASE_URL",
                 help="Journal database URL (default: SQLite under NANOBRAIN_HOME)."),
]
RunIdArgument = Annotated[str, typer.Argument(help="The run's id (see `nanobrain runs list`).", show_default=False)]


def _store(database: str | None) -> SqlJournalStore:
    from ..infrastructure.data.journal import SqlJournalStore

    return SqlJournalStore(database)


async def _using(database: str | None, work: Any) -> Any:
    store = _store(database)
    try:
        return await work(store)
    finally:
        await store.aclose()


def _when(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S") if stamp else ""


def _record_or_fail(record: RunRecord | None, run_id: str) -> RunRecord:
    from .cli import UsageProblem

    if record is None:
        raise UsageProblem(f"no durable run with id {run_id!r} (see `nanobrain runs list`)")
    return record


@runs_app.command("list")
def list_runs(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only runs in this state: running, waiting, finished, failed, interrupted, "
                     "corrupt."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs, newest first.")] = 50,
    database: DatabaseOption = None,
) -> None:
    """List durable runs, newest first."""
    from .cli import _out, _reporting

    with _reporting(ctx):
        records: list[RunRecord] = asyncio.run(_using(database, lambda s: s.runs(status=status, limit=limit)))
        out = _out()
        if not records:
            out.print(Text("(no durable runs)", style="dim"))
            return
        table = Table("run", "workflow", "status", "on / waiting for", "entries", "bytes", "updated")
        for record in records:
            table.add_row(
                record.run_id, record.workflow, record.status, record.where or record.error[:60],
                str(record.entries), str(record.bytes), _when(record.updated),
            )
        out.print(table)


@runs_app.command()
def show(ctx: typer.Context, run_id: RunIdArgument, database: DatabaseOption = None) -> None:
    """Show one durable run: state, where it is, what it waits for, its workflow file."""
    from .cli import _out, _reporting

    with _reporting(ctx):
        record = _record_or_fail(asyncio.run(_using(database, lambda s: s.get(run_id))), run_id)
        out = _out()
        for label, value in (
            ("run", record.run_id),
            ("workflow", record.workflow),
            ("status", record.status),
            ("on / waiting for", record.where),
            ("error", record.error),
            ("parent run", record.parent_run_id or ""),
            ("source", record.source),
            ("journal", f"{record.entries} entries, {record.bytes} bytes"),
            ("started", _when(record.created)),
            ("updated", _when(record.updated)),
        ):
            if value:
                out.print(Text.assemble((f"{label}: ", "bold cyan"), str(value)))


def _continue(
    ctx: typer.Context,
    run_id: str,
    file: Path | None,
    database: str | None,
    *,
    send: dict[str, Any] | None = None,
    fire: list[str] | None = None,
    force: bool = False,
) -> None:
    from .cli import UsageProblem, _load, _out, _reporting
    from .run_display import print_outputs

    with _reporting(ctx, file):

        async def go(store: SqlJournalStore) -> tuple[dict[str, Any], RunRecord]:
            record = _record_or_fail(await store.get(run_id), run_id)
            source = file or (Path(record.source) if record.source else None)
            if source is None:
                raise UsageProblem(
                    f"run {run_id} was not started from a workflow file: give the file, "
                    f"`nanobrain runs resume {run_id} WORKFLOW.yaml`"
                )
            workflow = _load(source)
            workflow.source = str(source.resolve())
            try:
                outputs = await workflow.resume(run_id, durable=store, send=send, fire=fire or (), force=force)
            finally:
                await workflow.aclose()
            after = await store.get(run_id)
            assert after is not None
            return outputs, after

        from .signals import StopSignals

        # SIGINT, SIGTERM and SIGHUP stop the resumed run as they stop `nanobrain run`: what it
        # completed stays journaled, and the run is marked interrupted, resumable again.
        with StopSignals() as stop, asyncio.Runner() as runner:
            outputs, record = stop.run(runner, _using(database, go))
        out = _out()
        print_outputs(out, outputs)
        _report_status(record)


def _report_status(record: RunRecord) -> None:
    from .cli import _err

    err = _err()
    if record.status == "waiting":
        err.print(
            Text(f"run {record.run_id} is waiting for {record.where}: "
                 f"nanobrain runs send {record.run_id} --input NAME=VALUE (or --fire STEP)", style="yellow")
        )
    else:
        err.print(Text(f"run {record.run_id}: {record.status}", style="dim"))


@runs_app.command()
def resume(
    ctx: typer.Context,
    run_id: RunIdArgument,
    file: Annotated[
        Path | None, typer.Argument(help="The workflow file (default: the one the run was started from).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Resume even though the workflow changed since the run started.")
    ] = False,
    database: DatabaseOption = None,
) -> None:
    """Continue a durable run after a crash. Completed steps are not run again; the step that was
    running when the process died runs again (at-least-once)."""
    _continue(ctx, run_id, file, database, force=force)


@runs_app.command()
def send(
    ctx: typer.Context,
    run_id: RunIdArgument,
    input_pairs: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="An input as NAME=VALUE (repeatable).")
    ] = None,
    input_json: Annotated[
        str | None, typer.Option("--input-json", help="Inputs as a JSON object (or @file.json).")
    ] = None,
    fire: Annotated[
        list[str] | None, typer.Option("--fire", help="Fire this manual step (repeatable).")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--workflow", help="The workflow file (default: the one the run started from).")
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Give a waiting run its input (or fire its manual step) and let it continue."""
    from .cli import UsageProblem, parse_inputs

    values = parse_inputs(input_pairs or [], input_json)
    if not values and not fire:
        from .cli import _reporting

        with _reporting(ctx):
            raise UsageProblem("nothing to send: give --input NAME=VALUE, --input-json or --fire STEP")
    _continue(ctx, run_id, file, database, send=values, fire=fire)


@runs_app.command()
def prune(
    ctx: typer.Context,
    older_than: Annotated[
        float, typer.Option("--older-than", min=0, help="Days since a finished or failed run ended.")
    ] = 30,
    database: DatabaseOption = None,
) -> None:
    """Delete the journals of finished and failed runs older than the retention period."""
    from .cli import _out, _reporting

    with _reporting(ctx):
        cutoff = time.time() - older_than * 86400
        count = asyncio.run(_using(database, lambda s: s.prune(finished_before=cutoff)))
        _out().print(f"pruned {count} run{'s' if count != 1 else ''}")


__all__ = ["runs_app"]
