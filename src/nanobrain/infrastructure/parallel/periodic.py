"""Background work that repeats on a clock (health probes, autoscaling decisions)."""

from __future__ import annotations

import asyncio
import contextvars
import logging

from ...core.clock import Clock

logger = logging.getLogger("nanobrain.parallel")


class Periodic:
    """Calls `tick()` every `interval` seconds of `clock` between `start()` and `stop()`.

    The task runs outside any run's context: what it reports goes to `on_event` hooks, not to
    whichever run happened to start it.
    """

    interval: float
    clock: Clock

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start ticking (the first tick runs at once). Starting twice does nothing."""
        if self.running:
            return
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._loop(), context=contextvars.Context())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                # One bad round (a factory that raised, say) must not end the background work.
                logger.exception("%r failed a round; trying again in %gs", self, self.interval)
            await self.clock.sleep(self.interval)

    async def __aenter__(self) -> Periodic:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
