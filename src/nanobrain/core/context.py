"""The context a step runs in: which run, which step, and where its events go."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .events import Custom, EventSink, RunEvent, Token


@dataclass(slots=True)
class StepContext:
    run_id: str
    step: str
    #: Where the step runs, `run_path/step`: the path of runs nested inside this step.
    path: str
    sink: EventSink | None
    #: Counters of the run (for example language-model tokens), added to its parent's at the end.
    usage: dict[str, int] = field(default_factory=dict)

    @property
    def run_path(self) -> str:
        """The path of the run the step belongs to: events carry it, like the step's own events."""
        return self.path.rpartition("/")[0] or self.path

    @property
    def streaming(self) -> bool:
        """Whether anyone listens to events (skip building them if not)."""
        return self.sink is not None

    def emit(self, event: RunEvent) -> None:
        if self.sink is not None:
            self.sink(event)

    def add_usage(self, **counts: int) -> None:
        """Add to the run's usage counters (`prompt_tokens=12, completion_tokens=30`)."""
        usage = self.usage
        for name, count in counts.items():
            usage[name] = usage.get(name, 0) + count

    def token(self, text: str) -> None:
        """Report a piece of streamed text."""
        if self.sink is not None:
            self.sink(Token(self.run_id, self.run_path, step=self.step, text=text))

    def report(self, name: str, **data: Any) -> None:
        """Report a custom event."""
        if self.sink is not None:
            self.sink(Custom(self.run_id, self.run_path, step=self.step, name=name, data=data))


_current: ContextVar[StepContext | None] = ContextVar("nanobrain_step_context", default=None)


def current_context() -> StepContext | None:
    """The context of the step running now, or None outside a run."""
    return _current.get()
