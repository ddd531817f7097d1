"""The `nanobrain` command: run, validate and draw workflows from YAML files.

Every error a user can cause (a bad config, a failing step, a malformed `--input`) ends with a
red message on stderr and exit code 1, without a traceback unless `--debug` is given. A reader
that stops early (`nanobrain run ... | head -1`) ends the command quietly with exit code 141.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from .. import __version__
from ..core.errors import NanoBrainError, ProblemsError, StepError
from ..observability.setup import observe_process
from .cli_inputs import UsageProblem, check_inputs, parse_inputs
from .run_display import EventLines, Progress, Where, dumps, execute, print_outputs, unwrap
from .signals import Stopped, StopSignals

if TYPE_CHECKING:
    from ..core.events import RunEvent
    from ..core.workflow import Workflow

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE, like Unix tools whose reader went away (`nanobrain run ... | head -1`)."""

WORKFLOW_IS_CODE = (
    "A workflow file is code, like a Python file: its references import Python modules and run them. "
    "Run only workflow files you trust; deployments can limit importable modules with "
    "NANOBRAIN_ALLOWED_MODULES (comma-separated module prefixes)."
)

MAX_PRINTED_PROBLEMS = 50
"""Problems listed on the terminal; the rest are counted (a broken 100,000-step file prints one screen)."""

app = typer.Typer(
    name="nanobrain",
    help="Run, check and draw NanoBrain workflows.\n\n" + WORKFLOW_IS_CODE,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@dataclasses.dataclass
class _Options:
    debug: bool = False


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # Rich's default exits with status 1; `_reporting` handles it like every other broken pipe.
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def _out() -> Console:
    return _Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return _Console(stderr=True, highlight=False, soft_wrap=True)


def _debug(ctx: typer.Context) -> bool:
    options = ctx.find_object(_Options)
    return bool(options and options.debug)


# -- errors ---------------------------------------------------------------------------------------
def _problem_line(problem: Any, file: Path | None) -> str:
    location = problem.file or (str(file) if file is not None else "")
    if location and problem.line:
        location += f":{problem.line}"
    elif problem.line:
        location = f"line {problem.line}"
    return ": ".join(part for part in (location, problem.where, problem.message) if part)


def _print_problems(err: Console, exc: ProblemsError, file: Path | None) -> None:
    count = len(exc.problems)
    subject = exc.subject or (str(file) if file is not None else "input")
    err.print(Text(f"error: {subject} is {exc.kind} ({count} problem{'s' if count != 1 else ''}):", style="bold red"))
    for problem in exc.problems[:MAX_PRINTED_PROBLEMS]:
        err.print(Text(f"  {_problem_line(problem, file)}", style="red"))
    if count > MAX_PRINTED_PROBLEMS:
        more = count - MAX_PRINTED_PROBLEMS
        err.print(Text(f"  ... and {more} more problem{'s' if more != 1 else ''}", style="red"))


def _describe(exc: BaseException) -> tuple[str, bool]:
    """The message for an error, and whether a traceback could help (the user's code raised)."""
    if isinstance(exc, StepError):
        path, cause = unwrap(exc)
        return f"step {path!r} failed: {type(cause).__name__}: {cause}", True
    if isinstance(exc, UsageProblem | NanoBrainError):
        return str(exc), False
    return f"{type(exc).__name__}: {exc}", True


@contextmanager
def _reporting(ctx: typer.Context, file: Path | None = None) -> Iterator[None]:
    """Turn exceptions into a red message on stderr and an exit code."""
    debug = _debug(ctx)
    try:
        yield
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise
    except (KeyboardInterrupt, Stopped) as exc:  # Ctrl-C, SIGTERM, SIGHUP: exit 128 + the signal's number
        try:
            _err().print(Text("interrupted" if not str(exc) else f"interrupted ({exc})", style="red"))
        except OSError:  # the terminal is gone (SIGHUP)
            pass
        raise typer.Exit(getattr(exc, "exit_code", EXIT_INTERRUPTED)) from None
    except BrokenPipeError:
        # Whoever read our output has stopped (`| head -1`): not an error worth a message.
        _discard_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    except Exception as exc:
        err = _err()
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
        if isinstance(exc, ProblemsError):
            _print_problems(err, exc, file)
        else:
            message, code_raised = _describe(exc)
            err.print(Text(f"error: {message}", style="bold red"))
            if code_raised and not debug:
                err.print(Text("(run `nanobrain --debug ...` to see the traceback)", style="dim"))
        raise typer.Exit(EXIT_ERROR) from None


def _require_standard_streams(*, stdin: bool = False) -> None:
    """Closed standard streams (`>&-`, `<&-`) are a clear error up front, not an AttributeError later."""
    if sys.stdout is None:
        raise UsageProblem(
            "standard output is closed: there is nowhere to print "
            "(redirect it, e.g. to /dev/null, instead of closing it)"
        )
    if stdin and sys.stdin is None:
        raise UsageProblem(
            "standard input is closed: the chat reads your messages from it (or pass one with --once MESSAGE)"
        )


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that flushing what is still buffered at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (captured, or already closed)
        pass


def _load(file: Path) -> Workflow:
    from ..config.loader import load_workflow

    if not file.exists():
        raise UsageProblem(f"file not found: {file}")
    workflow = load_workflow(file)
    workflow.validate()
    return workflow


# -- commands -------------------------------------------------------------------------------------
def _version(value: bool) -> None:
    if value:
        typer.echo(f"nanobrain {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", envvar="NANOBRAIN_DEBUG", help="Show the full traceback when something fails.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Run, check and draw NanoBrain workflows."""
    ctx.obj = _Options(debug=debug)


FileArgument = Annotated[Path, typer.Argument(help="Workflow YAML file.", show_default=False)]


@app.command()
def run(
    ctx: typer.Context,
    file: FileArgument,
    input_pairs: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="An input as NAME=VALUE (repeatable); typed inputs convert the text."),
    ] = None,
    input_json: Annotated[
        str | None,
        typer.Option("--input-json", help="Inputs as a JSON object (or @file.json), merged over --input."),
    ] = None,
    stream: Annotated[bool, typer.Option("--stream", "-s", help="Print every run event as it happens.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON only: the outputs object, or JSON lines with --stream.")
    ] = False,
    durable: Annotated[
        bool,
        typer.Option("--durable", help="Journal the run (SQLite under NANOBRAIN_HOME, or NANOBRAIN_DATABASE_URL) "
                     "so that `nanobrain runs resume` continues it after a crash; inputs may be sent later."),
    ] = False,
    run_id: Annotated[str | None, typer.Option("--run-id", help="The run's id (default: a new random id).")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Serve /metrics on 127.0.0.1:PORT during the run.")] = None,
) -> None:
    """Run a workflow once and print its outputs (traced when OTEL_EXPORTER_OTLP_ENDPOINT is set)."""
    with _reporting(ctx, file):
        _require_standard_streams()
        observe_process(metrics_port=metrics_port)
        values = parse_inputs(input_pairs or [], input_json)
        workflow = _load(file)
        if durable:
            from ..core.run import new_run_id

            # Recorded with the run, so `nanobrain runs resume` finds the workflow again.
            workflow.source = str(file.resolve())
            run_id = run_id or new_run_id()
        else:
            check_inputs(workflow, values)
        out, err = _out(), _err()
        where = Where(workflow.name)
        on_event: Callable[[RunEvent], None] | None = None
        printer: EventLines | None = None
        if stream and as_json:

            def on_event(event: RunEvent) -> None:
                sys.stdout.write(dumps(event.to_dict()) + "\n")
                sys.stdout.flush()

        elif stream:
            printer = on_event = EventLines(out, where)
        show_progress = not stream and sys.stdout.isatty() and err.is_terminal
        progress = Progress(workflow.name, where) if show_progress else None
        try:
            # SIGINT, SIGTERM and SIGHUP stop the run at once, without a traceback (exit 128 + N).
            with StopSignals() as stop, asyncio.Runner() as runner:
                outputs = stop.run(
                    runner,
                    execute(
                        workflow, values, on_event=on_event, progress=progress, console=err, durable=durable,
                        run_id=run_id,
                    ),
                )
        finally:
            if printer is not None:
                printer.end_tokens()
        if as_json:
            if not stream:  # with --stream, the last JSON line (run_finished) carries the outputs
                typer.echo(dumps(outputs, indent=2))
        else:
            print_outputs(out, outputs)
        if durable and run_id is not None:
            _report_durable(run_id)


def _report_durable(run_id: str) -> None:
    """Say on stderr how a durable run ended, and how to continue it when it waits."""
    from ..core.durable import default_store
    from .runs_cli import _report_status

    async def lookup() -> Any:
        store = default_store()
        try:
            return await store.get(run_id)
        finally:
            await store.aclose()  # type: ignore[attr-defined]

    record = asyncio.run(lookup())
    if record is not None:
        _report_status(record)


def _register_validate() -> None:
    # In its own module (one command, one concept), registered here to keep its place in --help.
    from .validate_cli import HELP, validate

    app.command("validate", help=HELP)(validate)


_register_validate()


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    dot = "dot"


@app.command()
def graph(
    ctx: typer.Context,
    file: FileArgument,
    format: Annotated[
        GraphFormat, typer.Option("--format", "-f", help="mermaid (Markdown, GitHub) or dot (Graphviz).")
    ] = GraphFormat.mermaid,
) -> None:
    """Print the workflow's graph as Mermaid or Graphviz DOT."""
    from ..core.graph_export import to_dot, to_mermaid

    with _reporting(ctx, file):
        workflow = _load(file)
        render = to_dot if format is GraphFormat.dot else to_mermaid
        typer.echo(render(workflow), nl=False)


@app.command()
def schema(ctx: typer.Context) -> None:
    """Print the JSON Schema of workflow files (for editors)."""
    with _reporting(ctx):
        from ..config.schema import json_schema

        typer.echo(json.dumps(json_schema(), indent=2))


@app.command()
def chat(
    ctx: typer.Context,
    message: Annotated[
        str | None, typer.Argument(help="With --once: the message (default: read standard input).", show_default=False)
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Answer one message, print the answer, exit.")] = False,
    session: Annotated[
        str | None, typer.Option("--session", help="Continue this session (created if it does not exist).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="local, local:PATH.gguf, openai:MODEL, anthropic:MODEL, ... "
                     "(default: NANOBRAIN_MODEL, else the bundled local model)"),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="A chat workflow YAML (default: the bundled chat.yaml).")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option("--database", envvar="NANOBRAIN_DATABASE_URL",
                     help="History database URL (default: SQLite under NANOBRAIN_HOME)."),
    ] = None,
) -> None:
    """Chat in the terminal: streamed answers, history that survives restarts, slash commands.

    Stopped (Ctrl-C, SIGTERM, a closed terminal), it keeps your message and the answer so far.
    """
    from .chat_terminal import run_chat

    if message is not None and not once:
        raise typer.BadParameter("a message argument needs --once", param_hint="MESSAGE")
    with _reporting(ctx, config):
        _require_standard_streams(stdin=not once or message is None)
        code = run_chat(
            config=config, model=model, session=session, database_url=database, once=once, message=message,
            out=_out(), err=_err(),
        )
    raise typer.Exit(code)


def _register_subcommands() -> None:
    from ..agents.cli import agents_app
    from ..observability.cli import health
    from ..protocols.cli import mcp_command
    from .plugins_cli import plugins_app
    from .runs_cli import runs_app
    from .serve_cli import keys_app, serve
    from .services_cli import services_app

    app.add_typer(runs_app, name="runs")
    app.command()(serve)
    app.add_typer(keys_app, name="keys")
    app.add_typer(agents_app, name="agents")
    app.add_typer(plugins_app, name="plugins")
    app.add_typer(services_app, name="services")
    app.command(name="health")(health)
    app.command("mcp")(mcp_command)


_register_subcommands()


def main() -> None:
    """Entry point of the `nanobrain` command."""
    app(prog_name="nanobrain")
