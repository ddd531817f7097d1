"""Deadlines on any clock: cancel a block of code when the clock reaches a time.

`asyncio.timeout` only knows the event loop's clock; these work on a `VirtualClock` too, so that
deadlines and attempt timeouts are testable without sleeping.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from types import TracebackType

from ...core.clock import Clock, RealClock

Cancel = Callable[[], object]


def call_at(clock: Clock, when: float, callback: Callable[[], None]) -> Cancel:
    """Call `callback()` once `clock` reaches `when`; returns a function that cancels the call.

    The callback runs outside any run's context: a timer belongs to no request.
    """
    loop = asyncio.get_running_loop()
    if type(clock) is RealClock:
        return loop.call_at(when, callback, context=contextvars.Context()).cancel

    async def wait_then_call() -> None:
        await clock.sleep(when - clock.now())
        callback()

    return loop.create_task(wait_then_call(), context=contextvars.Context()).cancel


class Deadline:
    """`async with Deadline(clock, when, error):` cancels the block at `when` and raises `error()`.

    An `asyncio.timeout` that a timer on `clock` expires: as with `asyncio.timeout_at`, a
    cancellation requested by someone else is not mistaken for the deadline, and nested deadlines
    work. `when=None` means no deadline.
    """

    __slots__ = ("_cancel", "_error", "_scope", "clock", "when")

    def __init__(self, clock: Clock, when: float | None, error: Callable[[], BaseException]) -> None:
        self.clock = clock
        self.when = when
        self._error = error
        self._scope: asyncio.Timeout | None = None
        self._cancel: Cancel | None = None

    @property
    def expired(self) -> bool:
        return self._scope is not None and self._scope.expired()

    async def __aenter__(self) -> Deadline:
        if self.when is not None:
            scope = self._scope = asyncio.timeout(None)
            await scope.__aenter__()
            if type(self.clock) is RealClock:
                scope.reschedule(self.when)  # the loop's own clock: no timer of ours needed
            else:
                self._cancel = call_at(self.clock, self.when, lambda: scope.reschedule(0))  # 0: at once
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._cancel is not None:
            self._cancel()
            self._cancel = None
        if self._scope is not None:
            try:
                await self._scope.__aexit__(exc_type, exc, tb)
            except TimeoutError:
                raise self._error() from None
