"""How `nanobrain run` runs and shows a run: event lines (`--stream`), the live progress view, the outputs.

Also the JSON encoding of run values (`--json`) and the wording of step failures, shared with the
error reporting in `cli`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.pretty import Pretty, pretty_repr
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from ..core.errors import StepError

if TYPE_CHECKING:
    from ..core.events import RunEvent
    from ..core.workflow import Workflow

PROGRESS_DELAY = 0.3
"""Seconds a run may take before the live step progress appears (on a terminal)."""


# -- failures -------------------------------------------------------------------------------------
def unwrap(exc: StepError) -> tuple[str, BaseException]:
    """Nested workflows wrap a failure once per level: the whole step path, and the original error."""
    path, cause = [exc.step], exc.error
    while isinstance(cause, StepError):
        path.append(cause.step)
        cause = cause.error
    return "/".join(path), cause


def error_text(error: BaseException | None) -> str:
    if isinstance(error, StepError):
        path, cause = unwrap(error)
        return f"{type(cause).__name__}: {cause} (in step {path!r})"
    return f"{type(error).__name__}: {error}"


# -- values ---------------------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
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


def dumps(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(value, default=jsonable, ensure_ascii=False, indent=indent)


def duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.001 else f"{seconds * 1000:.2f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m {rest:04.1f}s"


def print_outputs(console: Console, outputs: Mapping[str, Any]) -> None:
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


class Where:
    """Names steps relative to the top workflow: `upper`, or `inner/upper` inside a nested one."""

    def __init__(self, top: str) -> None:
        self.top = top

    def nested(self, event: RunEvent) -> bool:
        return event.path != self.top

    def step(self, event: RunEvent) -> str:
        name = getattr(event, "step", "") or ""
        prefix = event.path[len(self.top) + 1 :] if event.path.startswith(self.top + "/") else ""
        return f"{prefix}/{name}" if prefix and name else (prefix or name)


class EventLines:
    """`--stream` without `--json`: one readable line per event; tokens inline."""

    def __init__(self, console: Console, where: Where) -> None:
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
            return Text.assemble(("✓ ", "green"), name, (f"  {duration(event.duration)}", "dim"))
        if kind == "step_failed":
            attempt = f" (attempt {event.attempt})" if event.attempt > 1 else ""
            return Text.assemble(("✗ ", "red"), name, (f"{attempt}: {error_text(event.error)}", "red"))
        if kind == "output_set":
            target = f"{name}/{event.name}" if name else event.name
            return Text.assemble(("= ", "magenta"), f"{target}: ", short(event.value))
        if kind == "custom":
            return Text.assemble(("• ", "yellow"), f"{name}: {event.name}", self._values("", event.data))
        if kind == "run_finished":
            return Text.assemble(("■ ", "bold green"), ("finished", "bold"), (f" in {duration(event.duration)}", "dim"))
        if kind == "run_failed":
            return Text.assemble(
                ("■ ", "bold red"), ("failed", "bold red"), (f" after {duration(event.duration)}", "dim")
            )
        return Text(f"{kind}: {dumps(event.to_dict())}")

    @staticmethod
    def _values(prefix: str, values: Mapping[str, Any]) -> Text:
        if not values:
            return Text("")
        return Text(f"{prefix} " + ", ".join(f"{k}={short(v)}" for k, v in values.items()), style="dim")


def short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclasses.dataclass
class Row:
    spinner: Spinner
    running: list[float] = dataclasses.field(default_factory=list)
    finished: int = 0
    total: float = 0.0
    failed: bool = False


class Progress:
    """The live view on a terminal: running steps with their time so far, finished ones with their duration."""

    MAX_ROWS = 20
    STATUS: Mapping[str, tuple[str, str]] = {
        "run_finished": ("finished", "green"),
        "run_failed": ("failed", "red"),
        "interrupted": ("interrupted", "yellow"),
    }

    def __init__(self, workflow: str, where: Where) -> None:
        self.workflow = workflow
        self.where = where
        self.started = time.monotonic()
        self.rows: dict[str, Row] = {}
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
            row = self.rows[name] = Row(Spinner("dots", style="cyan"))
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
                table.add_row(Text("✓", style="green"), name + count, duration(row.total))
        for name, row, starts in running:
            many = f" ({len(starts)} running)" if len(starts) > 1 else ""
            elapsed = duration(now - starts[0])
            if self.outcome is None:
                table.add_row(row.spinner, name + many, elapsed)
            else:  # the run ended around it (another step failed, or Ctrl-C)
                table.add_row(Text("■", style="yellow"), name + many, f"cancelled after {elapsed}")
        status = self.STATUS.get(self.outcome or "", ("running", "cyan"))
        title = Text.assemble(
            (f"{self.workflow} ", "bold"), (status[0], status[1]), (f"  {duration(now - self.started)}", "dim")
        )
        return Group(title, table)


# -- running --------------------------------------------------------------------------------------
async def execute(
    workflow: Workflow,
    inputs: dict[str, Any],
    *,
    on_event: Callable[[RunEvent], None] | None,
    progress: Progress | None,
    console: Console,
    durable: bool = False,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Run the workflow through its event stream, showing it as it goes; return the top run's outputs.

    The live progress view (with `progress`) appears once the run took PROGRESS_DELAY seconds."""
    outputs: dict[str, Any] = {}
    top_run: str | None = None
    live: Live | None = None
    timer: asyncio.TimerHandle | None = None
    if progress is not None:
        live = Live(progress, console=console, refresh_per_second=10, transient=False)
        timer = asyncio.get_running_loop().call_later(PROGRESS_DELAY, live.start)
    try:
        async for event in workflow.stream(inputs, durable=durable or None, run_id=run_id):
            if top_run is None and event.type == "run_started":
                top_run = event.run_id
            elif event.type == "run_finished" and event.run_id == top_run:
                outputs = dict(event.outputs)  # type: ignore[attr-defined]
            if on_event is not None:
                on_event(event)
            if progress is not None:
                progress.update(event)
    except asyncio.CancelledError:  # a stop signal: StopSignals cancels us, then raises Stopped
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
