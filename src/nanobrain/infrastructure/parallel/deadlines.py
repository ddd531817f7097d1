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
    if isinstance(clock, RealClock):
        return loop.call_at(when, callback, context=contextvars.Context()).cancel

    async def wait_then_call() -> None:
        await clock.sleep(when - clock.now())
        callback()

    return loop.create_task(wait_then_call(), context=contextvars.Context()).cancel


class Deadline:
    """`async with Deadline(clock, when, error):` cancels the block at `when` and raises `error()`.

    Like `asyncio.timeout_at`: a cancellation requested by someone else is not mistaken for
    the deadline, and nested deadlines work. `when=None` means no deadline.
    """

    __slots__ = ("_cancel", "_cancelling", "_error", "_state", "_task", "clock", "when")

    def __init__(self, clock: Clock, when: float | None, error: Callable[[], BaseException]) -> None:
        self.clock = clock
        self.when = when
        self._error = error
        self._cancel: Cancel | None = None
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._state = "new"

    @property
    def expired(self) -> bool:
        return self._state in ("expiring", "expired")

    async def __aenter__(self) -> Deadline:
        self._state = "entered"
        if self.when is not None:
            task = asyncio.current_task()
            if task is None:
                raise RuntimeError("Deadline must be used inside a task")
            self._task = task
            self._cancelling = task.cancelling()
            self._cancel = call_at(self.clock, self.when, self._expire)
        return self

    def _expire(self) -> None:
        if self._state == "entered" and self._task is not None:
            self._state = "expiring"
            self._task.cancel()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._cancel is not None:
            self._cancel()
            self._cancel = None
        if self._state == "expiring":
            self._state = "expired"
            assert self._task is not None
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise self._error() from None
        else:
            self._state = "exited"
