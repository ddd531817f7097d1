"""State changes of pools, breakers, health checks and autoscalers, as events.

Each change goes to the `on_event` callbacks (useful outside runs) and, when it happens inside a
run, also into the run's event stream as a `Custom` event (`current_context().report`), so that
the CLI, tracing and metrics see it through the one stream they already read.

"The current run" is the run of the request that caused the change: a request keeps its
caller's context (`Request.context`), and the dispatcher, which may run in another run's task,
places and grants each request in that context. Changes no request causes (health checks,
autoscaling, timers) run outside any run and go to the hooks only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...core.clock import Clock, RealClock
from ...core.context import current_context

logger = logging.getLogger("nanobrain.parallel")


@dataclass(frozen=True, slots=True)
class ParallelEvent:
    """`name` says what changed (`breaker_opened`, `processor_unhealthy`, `pool_scaled`, ...)."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    #: The clock's time when it happened.
    time: float = 0.0


EventHook = Callable[[ParallelEvent], None]


class EventEmitter:
    """Sends events to subscribed hooks and to the current run, if any."""

    __slots__ = ("_hooks", "clock", "source")

    def __init__(self, source: str, *, clock: Clock | None = None, on_event: EventHook | None = None) -> None:
        self.source = source
        self.clock: Clock = clock or RealClock()
        self._hooks: list[EventHook] = [on_event] if on_event is not None else []

    def subscribe(self, hook: EventHook) -> Callable[[], None]:
        """Call `hook` for every event from now on; returns a function that unsubscribes."""
        self._hooks.append(hook)

        def unsubscribe() -> None:
            if hook in self._hooks:
                self._hooks.remove(hook)

        return unsubscribe

    def emit(self, name: str, **data: Any) -> None:
        data = {"pool": self.source, **data}
        hooks = self._hooks
        if hooks:
            event = ParallelEvent(name, data, _now(self.clock))
            for hook in tuple(hooks):
                try:
                    hook(event)
                except Exception:
                    # A broken listener must not corrupt the state change it is told about.
                    logger.exception("on_event hook %r failed on %s", hook, name)
        context = current_context()
        if context is not None:
            context.report(name, **data)


def _now(clock: Clock) -> float:
    try:
        return clock.now()
    except RuntimeError:  # RealClock outside a running loop
        return 0.0
