"""Stopping a long-lived process cleanly on SIGINT, SIGTERM and SIGHUP.

Ctrl-C, `kill` and a closed terminal all mean "stop now, but keep what you have". Inside
`StopSignals`, the first of these signals cancels the work that `run` is running, so that it
unwinds through its own clean-up (a chat turn stores its partial answer), and `run` then raises
`Stopped`, which says which signal it was. The terminal chat, `nanobrain run` and servers share it:

    with StopSignals() as stop, asyncio.Runner() as runner:
        try:
            stop.run(runner, serve())   # serve() stops accepting work and saves its state when cancelled
        except Stopped as stopped:
            sys.exit(stopped.exit_code)
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from types import FrameType, TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)  # no SIGHUP on Windows
)

GRACE_SECONDS = 1.0
"""How long the event loop may stay blocked after a stop signal before the signal is raised as
an exception in the blocking code (a step that blocks the loop would otherwise never see it)."""


class Stopped(BaseException):
    """A stop signal ended the work.

    Not an Exception, so that `except Exception` in a step does not swallow it; not a
    KeyboardInterrupt either, which asyncio lets escape the event loop from whichever task it
    hits, leaving the other tasks (and their clean-up) behind.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as shells report a process ended by a signal."""
        return 128 + self.signum


class StopSignals:
    """While active (`with StopSignals() as stop:`), stop signals stop the work instead of the process.

    - During `stop.run(runner, coro)`, the first signal cancels `coro`'s task; once it has unwound,
      `run` raises `Stopped`. If the event loop does not get to the cancel within `grace` seconds
      (a step blocks it), the blocking code is cancelled where it is (CancelledError raised there).
    - Outside `run` (waiting for the next line of input), a signal raises `Stopped` at once.
    - A second SIGINT during a stop raises `Stopped` at once (the user insists); a second SIGTERM or
      SIGHUP is ignored (the stop is under way).

    Outside the main thread, where signal handlers cannot be set, it does nothing.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS, *, grace: float = GRACE_SECONDS) -> None:
        self.signals = signals
        self.grace = grace
        #: The signal that stopped the current (or last) `run`, if one did.
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_answered = threading.Event()
        self._force = False

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def run(self, runner: asyncio.Runner, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` in `runner` until it is done, or until a stop signal cancelled it (Stopped)."""

        async def main() -> T:
            self._task = asyncio.current_task()
            return await work

        self.received = None
        self._force = False
        self._loop = runner.get_loop()
        try:
            return runner.run(main())
        except asyncio.CancelledError:
            if self.received is None:
                raise
            raise Stopped(self.received) from None
        finally:
            self._task = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        task, loop = self._task, self._loop
        if task is None or task.done() or loop is None:
            self.received = signum
            raise Stopped(signum)
        if self.received is None:
            self.received = signum
            self._loop_answered.clear()
            task.cancel()
            loop.call_soon_threadsafe(self._loop_answered.set)  # also wakes a loop waiting in select()
            watchdog = threading.Timer(self.grace, self._unblock, args=(signum,))
            watchdog.daemon = True
            watchdog.start()
            return
        if self._force:
            # The loop is blocked (see `_unblock`): cancel the code that blocks it, right where it is,
            # so that it unwinds like any cancelled step and the loop gets to finish the stop.
            self._force = False
            raise asyncio.CancelledError
        if signum == signal.SIGINT:
            raise Stopped(self.received)

    def _unblock(self, signum: int) -> None:
        """Runs in a timer thread: if the loop is still blocked, deliver the signal again, forcefully."""
        if self._loop_answered.is_set() or self._task is None:
            return
        self._force = True
        main = threading.main_thread().ident
        if main is not None and hasattr(signal, "pthread_kill"):  # a real signal interrupts a blocking call
            signal.pthread_kill(main, signum)
