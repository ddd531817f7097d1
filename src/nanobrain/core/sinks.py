"""Event sinks: where a run's events go.

A run sends every event to one `SinkFanout`, which calls the run's own sinks and the
process-wide instruments in order. A sink that raises is logged once and disabled for that
run: a broken consumer (a metrics exporter, a closed HTTP stream) never fails the user's run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from .events import EventSink, RunEvent

logger = logging.getLogger("nanobrain.events")

_instruments: list[EventSink] = []


def instrument(sink: EventSink) -> Callable[[], None]:
    """Send the events of every run started from now on to `sink`; returns a function that removes it.

    Runs already going keep the sinks they started with.
    """
    _instruments.append(sink)

    def remove() -> None:
        if sink in _instruments:
            _instruments.remove(sink)

    return remove


def instruments() -> tuple[EventSink, ...]:
    """The process-wide sinks registered with `instrument`."""
    return tuple(_instruments)


class SinkFanout:
    """Calls each sink with each event; a sink that raises is reported once and dropped."""

    __slots__ = ("run_id", "sinks")

    def __init__(self, sinks: Iterable[EventSink], run_id: str = "") -> None:
        self.sinks: tuple[EventSink, ...] = tuple(sinks)
        self.run_id = run_id

    def __call__(self, event: RunEvent) -> None:
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:
                self._disable(sink, event)

    def _disable(self, sink: EventSink, event: RunEvent) -> None:
        self.sinks = tuple(s for s in self.sinks if s is not sink)
        logger.exception(
            "event sink %r raised on a %s event of run %s; it gets no more events of this run",
            sink,
            event.type,
            self.run_id or event.run_id,
        )


def fan_out(sinks: Iterable[EventSink | None], run_id: str = "") -> SinkFanout | None:
    """One safe sink for the given sinks plus the instruments, or None when nobody listens."""
    chosen = [s for s in sinks if s is not None]
    chosen.extend(_instruments)
    if not chosen:
        return None
    return SinkFanout(chosen, run_id)


__all__ = ["SinkFanout", "fan_out", "instrument", "instruments"]
