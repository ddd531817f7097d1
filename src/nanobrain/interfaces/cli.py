"""The `nanobrain` command: run, validate and draw workflows from YAML files.

Every error a user can cause (a bad config, a failing step, a malformed `--input`) ends with a
red message on stderr and exit code 1, without a traceback unless `--debug` is given.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.pretty import Pretty, pretty_repr
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from .. import __version__
from ..core.errors import NanoBrainError, ProblemsError, StepFailed

if TYPE_CHECKING:
    from ..core.events import RunEvent
    from ..core.workflow import Workflow

PROGRESS_DELAY = 0.3
"""Seconds a run may take before the live step progress appears (on a terminal)."""

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="nanobrain",
    help="Run, check and draw NanoBrain workflows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@dataclasses.dataclass
class _Options:
    debug: bool = False


class UsageProblem(Exception):
    """A mistake on the command line that typer cannot see (like `--input` without `=`)."""


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


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
    for problem in exc.problems:
        err.print(Text(f"  {_problem_line(problem, file)}", style="red"))


def _unwrap(exc: StepFailed) -> tuple[str, BaseException]:
    """Nested workflows wrap a failure once per level: the whole step path, and the original error."""
    path, cause = [exc.step], exc.error
    while isinstance(cause, StepFailed):
        path.append(cause.step)
        cause = cause.error
    return "/".join(path), cause


def _error_text(error: BaseException | None) -> str:
    if isinstance(error, StepFailed):
        path, cause = _unwrap(error)
        return f"{type(cause).__name__}: {cause} (in step {path!r})"
    return f"{type(error).__name__}: {error}"


def _describe(exc: BaseException) -> tuple[str, bool]:
    """The message for an error, and whether a traceback could help (the user's code raised)."""
    if isinstance(exc, StepFailed):
        path, cause = _unwrap(exc)
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
    except KeyboardInterrupt:
        _err().print(Text("interrupted", style="red"))
        raise typer.Exit(EXIT_INTERRUPTED) from None
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


def _load(file: Path) -> Workflow:
    from ..config.loader import load_workflow

    if not file.exists():
        raise UsageProblem(f"file not found: {file}")
    workflow = load_workflow(file)
    workflow.validate()
    return workflow


# -- values ---------------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """`json.dumps(default=...)`: models, dataclasses, sets, bytes and the rest as text."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return str(value)


def _dumps(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(value, default=_jsonable, ensure_ascii=False, indent=indent)


def parse_inputs(pairs: list[str], raw_json: str | None) -> dict[str, Any]:
    """`--input k=v` pairs (string values) with the `--input-json` object merged over them."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageProblem(f"--input expects NAME=VALUE, got {pair!r}")
        values[name] = value
    if raw_json is not None:
        text = raw_json
        if raw_json.startswith("@"):
            try:
                text = Path(raw_json[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                raise UsageProblem(f"--input-json: cannot read {raw_json[1:]!r}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageProblem(f"--input-json is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise UsageProblem(
                f'--input-json must be a JSON object like {{"name": "value"}}, got {type(data).__name__}'
            )
        values.update(data)
    return values


def _check_inputs(workflow: Workflow, values: Mapping[str, Any]) -> None:
    declared = workflow.inputs
    unknown = [name for name in values if name not in declared]
    if unknown:
        raise UsageProblem(
            f"workflow {workflow.name!r} has no input {', '.join(map(repr, unknown))} "
            f"(its inputs: {', '.join(declared) or 'none'})"
        )
    missing = [name for name in workflow.required_inputs if name not in values]
    if missing:
        raise UsageProblem(
            f"workflow {workflow.name!r} needs input {', '.join(map(repr, missing))} "
            f"(pass {' '.join(f'--input {name}=...' for name in missing)})"
        )


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.001 else f"{seconds * 1000:.2f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m {rest:04.1f}s"


def _print_outputs(console: Console, outputs: Mapping[str, Any]) -> None:
    if not outputs:
        console.print(Text("(no outputs)", style="dim"))
        return
    for name, value in outputs.items():
        label = Text(f"{name}:", style="bold cyan")
        if isinstance(value, str):
            if "\n" in value:
                console.print(label)
                console.print(Text(value), markup=False)
            else:
                console.print(Text.assemble(label, " ", value))
        else:
            text = pretty_repr(value, max_width=max(20, console.width - len(name) - 2))
            if "\n" in text:
                console.print(label)
                console.print(Pretty(value))
            else:
                console.print(Text.assemble(label, " ", text))


# -- events ---------------------------------------------------------------------------------------
class _Where:
    """Names steps relative to the top workflow: `upper`, or `inner/upper` inside a nested one."""

    def __init__(self, top: str) -> None:
        self.top = top

    def nested(self, event: RunEvent) -> bool:
        return event.path != self.top

    def step(self, event: RunEvent) -> str:
        name = getattr(event, "step", "") or ""
        prefix = event.path[len(self.top) + 1 :] if event.path.startswith(self.top + "/") else ""
        return f"{prefix}/{name}" if prefix and name else (prefix or name)


class _EventLines:
    """`--stream` without `--json`: one readable line per event; tokens inline."""

    def __init__(self, console: Console, where: _Where) -> None:
        self.console = console
        self.where = where
        self.in_tokens = False

    def __call__(self, event: RunEvent) -> None:
        kind = event.type
        if kind == "token":
            self.console.file.write(event.text)  # type: ignore[attr-defined]
            self.console.file.flush()
            self.in_tokens = True
            return
        line = self.line(event)
        if line is None:
            return
        self.end_tokens()
        self.console.print(line)

    def end_tokens(self) -> None:
        if self.in_tokens:
            self.console.file.write("\n")
            self.in_tokens = False

    def line(self, event: Any) -> Text | None:
        kind, where = event.type, self.where
        if kind.startswith("run_") and where.nested(event):
            return None  # the parent's step events already say when a nested workflow runs
        name = where.step(event)
        if kind == "run_started":
            return Text.assemble(("▶ ", "bold"), (f"run {event.path}", "bold"), self._values(" inputs", event.inputs))
        if kind == "step_started":
            return Text.assemble(("→ ", "cyan"), name)
        if kind == "step_finished":
            return Text.assemble(("✓ ", "green"), name, (f"  {_duration(event.duration)}", "dim"))
        if kind == "step_failed":
            attempt = f" (attempt {event.attempt})" if event.attempt > 1 else ""
            return Text.assemble(("✗ ", "red"), name, (f"{attempt}: {_error_text(event.error)}", "red"))
        if kind == "output_set":
            target = f"{name}/{event.name}" if name else event.name
            return Text.assemble(("= ", "magenta"), f"{target}: ", _short(event.value))
        if kind == "custom":
            return Text.assemble(("• ", "yellow"), f"{name}: {event.name}", self._values("", event.data))
        if kind == "run_finished":
            return Text.assemble(
                ("■ ", "bold green"), ("finished", "bold"), (f" in {_duration(event.duration)}", "dim")
            )
        if kind == "run_failed":
            return Text.assemble(
                ("■ ", "bold red"), ("failed", "bold red"), (f" after {_duration(event.duration)}", "dim")
            )
        return Text(f"{kind}: {_dumps(event.to_dict())}")

    @staticmethod
    def _values(prefix: str, values: Mapping[str, Any]) -> Text:
        if not values:
            return Text("")
        return Text(f"{prefix} " + ", ".join(f"{k}={_short(v)}" for k, v in values.items()), style="dim")


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclasses.dataclass
class _Row:
    spinner: Spinner
    running: list[float] = dataclasses.field(default_factory=list)
    finished: int = 0
    total: float = 0.0
    failed: bool = False


class _Progress:
    """The live view on a terminal: running steps with their time so far, finished ones with their duration."""

    MAX_ROWS = 20
    STATUS: Mapping[str, tuple[str, str]] = {
        "run_finished": ("finished", "green"),
        "run_failed": ("failed", "red"),
        "interrupted": ("interrupted", "yellow"),
    }

    def __init__(self, workflow: str, where: _Where) -> None:
        self.workflow = workflow
        self.where = where
        self.started = time.monotonic()
        self.rows: dict[str, _Row] = {}
        self.outcome: str | None = None

    def update(self, event: Any) -> None:
        kind = event.type
        if kind.startswith("run_"):
            if not self.where.nested(event) and kind != "run_started":
                self.outcome = kind
            return
        if kind not in ("step_started", "step_finished", "step_failed"):
            return
        name = self.where.step(event)
        row = self.rows.get(name)
        if row is None:
            row = self.rows[name] = _Row(Spinner("dots", style="cyan"))
        if kind == "step_started":
            row.running.append(time.monotonic())
            return
        if row.running:
            row.running.pop(0)
        if kind == "step_finished":
            row.finished += 1
            row.total += event.duration
        else:
            row.failed = True

    def __rich__(self) -> RenderableType:
        # Called from Live's refresh thread: read snapshots of what the event loop mutates.
        now = time.monotonic()
        rows = [(name, row, list(row.running)) for name, row in list(self.rows.items())]
        running = [(n, r, starts) for n, r, starts in rows if starts][-self.MAX_ROWS :]
        done = [(n, r) for n, r, starts in rows if not starts]
        room = max(0, self.MAX_ROWS - len(running))
        done = done[max(0, len(done) - room) :]  # the most recent ones
        hidden = len(rows) - len(running) - len(done)
        table = Table.grid(padding=(0, 1))
        table.add_column(width=2)
        table.add_column()
        table.add_column(style="dim")
        if hidden:
            table.add_row("", Text(f"… {hidden} more", style="dim"), "")
        for name, row in done:
            count = f" ({row.finished} runs)" if row.finished > 1 else ""
            if row.failed:
                table.add_row(Text("✗", style="red"), Text(name, style="red"), Text(f"failed{count}", style="red"))
            else:
                table.add_row(Text("✓", style="green"), name + count, _duration(row.total))
        for name, row, starts in running:
            many = f" ({len(starts)} running)" if len(starts) > 1 else ""
            elapsed = _duration(now - starts[0])
            if self.outcome is None:
                table.add_row(row.spinner, name + many, elapsed)
            else:  # the run ended around it (another step failed, or Ctrl-C)
                table.add_row(Text("■", style="yellow"), name + many, f"cancelled after {elapsed}")
        status = self.STATUS.get(self.outcome or "", ("running", "cyan"))
        title = Text.assemble(
            (f"{self.workflow} ", "bold"), (status[0], status[1]), (f"  {_duration(now - self.started)}", "dim")
        )
        return Group(title, table)


async def _execute(
    workflow: Workflow,
    inputs: dict[str, Any],
    *,
    on_event: Callable[[RunEvent], None] | None,
    progress: _Progress | None,
    console: Console,
) -> dict[str, Any]:
    """Run the workflow through its event stream; return the top run's outputs."""
    outputs: dict[str, Any] = {}
    top_run: str | None = None
    live: Live | None = None
    timer: asyncio.TimerHandle | None = None
    if progress is not None:
        live = Live(progress, console=console, refresh_per_second=10, transient=False)
        timer = asyncio.get_running_loop().call_later(PROGRESS_DELAY, live.start)
    try:
        async for event in workflow.stream(**inputs):
            if top_run is None and event.type == "run_started":
                top_run = event.run_id
            elif event.type == "run_finished" and event.run_id == top_run:
                outputs = dict(event.outputs)  # type: ignore[attr-defined]
            if on_event is not None:
                on_event(event)
            if progress is not None:
                progress.update(event)
    except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels us, then raises KeyboardInterrupt
        if progress is not None:
            progress.outcome = progress.outcome or "interrupted"
        raise
    finally:
        if timer is not None:
            timer.cancel()
        if live is not None and live.is_started:
            live.stop()
        aclose = getattr(workflow, "aclose", None)
        if aclose is not None:
            await aclose()
    return outputs


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
) -> None:
    """Run a workflow once and print its outputs."""
    with _reporting(ctx, file):
        values = parse_inputs(input_pairs or [], input_json)
        workflow = _load(file)
        _check_inputs(workflow, values)
        out, err = _out(), _err()
        where = _Where(workflow.name)
        on_event: Callable[[RunEvent], None] | None = None
        printer: _EventLines | None = None
        if stream and as_json:

            def on_event(event: RunEvent) -> None:
                sys.stdout.write(_dumps(event.to_dict()) + "\n")
                sys.stdout.flush()

        elif stream:
            printer = on_event = _EventLines(out, where)
        show_progress = not stream and sys.stdout.isatty() and err.is_terminal
        progress = _Progress(workflow.name, where) if show_progress else None
        try:
            outputs = asyncio.run(_execute(workflow, values, on_event=on_event, progress=progress, console=err))
        finally:
            if printer is not None:
                printer.end_tokens()
        if as_json:
            if not stream:  # with --stream, the last JSON line (run_finished) carries the outputs
                typer.echo(_dumps(outputs, indent=2))
        else:
            _print_outputs(out, outputs)


@app.command()
def validate(ctx: typer.Context, file: FileArgument) -> None:
    """Check a workflow file; list every problem (exit 1) or say it is valid."""
    with _reporting(ctx, file):
        workflow = _load(file)
        steps = len(workflow.steps)
        inputs, outputs = len(workflow.inputs), len(workflow.outputs)
        _out().print(
            Text.assemble(
                ("OK ", "bold green"),
                f"workflow {workflow.name!r}: {steps} step{'s' if steps != 1 else ''}, "
                f"{inputs} input{'s' if inputs != 1 else ''}, {outputs} output{'s' if outputs != 1 else ''}",
            )
        )


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
    """Chat in the terminal: streamed answers, history that survives restarts, slash commands."""
    from .chat_terminal import run_chat

    if message is not None and not once:
        raise typer.BadParameter("a message argument needs --once", param_hint="MESSAGE")
    with _reporting(ctx, config):
        code = run_chat(
            config=config, model=model, session=session, database_url=database, once=once, message=message,
            out=_out(), err=_err(),
        )
    raise typer.Exit(code)


def main() -> None:
    """Entry point of the `nanobrain` command."""
    app(prog_name="nanobrain")
