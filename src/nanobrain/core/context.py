"""The context a step runs in: which run, which step, and where its events go."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .events import Custom, EventSink, RunEvent, Token
from .journal import CALL

T = TypeVar("T")


@dataclass(slots=True)
class StepContext:
    run_id: str
    step: str
    #: Where the step runs, `run_path/step`: the path of runs nested inside this step.
    path: str
    sink: EventSink | None
    #: Counters of the run (for example language-model tokens), added to its parent's at the end.
    usage: dict[str, int] = field(default_factory=dict)
    #: The event loop the run lives in and its thread: a step running in a worker thread (thread
    #: executor) hands its events to that loop instead of calling the sink from the wrong thread.
    loop: asyncio.AbstractEventLoop | None = field(default_factory=asyncio._get_running_loop)
    thread: int = field(default_factory=threading.get_ident)
    #: The run's clock (None: the event loop's). Nested runs and retry waits use it too.
    clock: Any = None
    #: Which firing of the step this is (1, 2, ...), as in its step events.
    firing: int = 0
    #: The journal of a durable run (None otherwise): `recorded` keeps calls in it.
    journal: Any = None

    @property
    def idempotency_key(self) -> str:
        """`run_id/step/firing`: the same for a firing re-run after a crash (durable runs), so a
        side effect keyed on it can be made exactly-once."""
        return f"{self.run_id}/{self.step}/{self.firing}"

    @property
    def run_path(self) -> str:
        """The path of the run the step belongs to: events carry it, like the step's own events."""
        return self.path.rpartition("/")[0] or self.path

    @property
    def streaming(self) -> bool:
        """Whether anyone listens to events (skip building them if not)."""
        return self.sink is not None

    def emit(self, event: RunEvent) -> None:
        sink = self.sink
        if sink is None:
            return
        if self.loop is not None and threading.get_ident() != self.thread:
            self.loop.call_soon_threadsafe(sink, event)
        else:
            sink(event)

    async def recorded(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """`await call()`, journaled in a durable run: when a resumed run re-runs this firing,
        a call that completed before the crash returns its recorded result instead of running
        again (a model call is not paid twice). Outside durable runs it simply calls."""
        journal = self.journal
        if journal is None:
            return await call()
        place = (self.step, self.firing, key)
        if place in journal.calls:
            return journal.calls[place]
        value = await call()
        journal.calls[place] = value
        journal.add(CALL, self.step, self.firing, (key, value))
        await journal.flush()
        return value

    def add_usage(self, **counts: int) -> None:
        """Add to the run's usage counters (`prompt_tokens=12, completion_tokens=30`)."""
        usage = self.usage
        for name, count in counts.items():
            usage[name] = usage.get(name, 0) + count

    def token(self, text: str) -> None:
        """Report a piece of streamed text."""
        if self.sink is not None:
            self.emit(Token(self.run_id, self.run_path, step=self.step, text=text, firing=self.firing))

    def report(self, name: str, **data: Any) -> None:
        """Report a custom event."""
        if self.sink is not None:
            self.emit(Custom(self.run_id, self.run_path, step=self.step, name=name, data=data, firing=self.firing))


_current: ContextVar[StepContext | None] = ContextVar("nanobrain_step_context", default=None)


def current_context() -> StepContext | None:
    """The context of the step running now, or None outside a run."""
    return _current.get()
