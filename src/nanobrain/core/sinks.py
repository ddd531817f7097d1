"""Event sinks: where a run's events go.

A run sends every event to one `SinkFanout`, which calls the run's own sinks and the
process-wide instruments in order. A sink that raises is logged once and disabled for that
run: a broken consumer (a metrics exporter, a closed HTTP stream) never fails the user's run.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable

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


def fan_out(sinks: Iterable[EventSink | None], run_id: str = "") -> EventSink | None:
    """One safe sink for the given sinks plus the instruments, or None when nobody listens."""
    chosen = [s for s in sinks if s is not None]
    chosen.extend(_instruments)
    if not chosen:
        return None
    if len(chosen) == 1 and type(chosen[0]) is EventBuffer:
        return chosen[0]  # it cannot raise: no guard needed (the common `stream()` case)
    return SinkFanout(chosen, run_id)


class EventBuffer:
    """A sink that keeps events for one async reader (`stream()`, `events()`).

    Appending costs no task wake-up per event: the reader is woken once, then takes every
    event that arrived meanwhile. Unbounded like the run's own event production, which never
    waits for a reader. Call `close()` when no more events will come.
    """

    __slots__ = ("_closed", "_events", "_waiter")

    def __init__(self) -> None:
        self._events: deque[RunEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def __call__(self, event: RunEvent) -> None:
        self._events.append(event)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def close(self, *_: object) -> None:
        self._closed = True
        self(None)  # type: ignore[arg-type]  # wakes the reader; `None` marks the end

    async def __aiter__(self) -> AsyncIterator[RunEvent]:
        events = self._events
        while True:
            while events:
                event = events.popleft()
                if event is None:
                    return
                yield event
            await self.arrival()

    def arrival(self) -> asyncio.Future[None]:
        """A future that is done when the next event arrives (for readers that pop `events` themselves)."""
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter

    @property
    def events(self) -> deque[RunEvent]:
        """Events not yet read, oldest first; `None` after the last one."""
        return self._events


__all__ = ["EventBuffer", "SinkFanout", "fan_out", "instrument", "instruments"]
