"""Autoscaling: grow a pool when requests queue up or answers get slow, shrink it when idle."""

from __future__ import annotations

import inspect
import itertools
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ...core.clock import Clock
from ...core.policy import POLICY_CONFIG, check_bounds, option
from ...core.steps import Step
from .periodic import Periodic
from .processor import Processor

if TYPE_CHECKING:
    from .pool import ProcessorPool

Factory = Callable[[int], "Step | Processor | Awaitable[Step | Processor]"]


@dataclass(frozen=True)
class AutoscalePolicy:
    """Decide every `interval` seconds, keeping the pool between `min_size` and `max_size`.

    Grow by `step` when more than `queue_per_processor` requests per processor are waiting, or
    when the processors' average latency is above `max_latency`. Shrink by `step` when nothing
    waits and fewer than `idle_utilization` of the slots were busy for `idle_for` seconds. Two
    changes are at least `cooldown` seconds apart.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = POLICY_CONFIG

    min_size: int = option(1, "Fewest processors", ge=0)
    max_size: int = option(8, "Most processors", ge=1)
    interval: float = option(5.0, "Seconds between two decisions", gt=0)
    queue_per_processor: float = option(2.0, "Grow when more requests per processor wait", ge=0)
    max_latency: float | None = option(None, "Grow when the average latency (s) is above", gt=0)
    idle_utilization: float = option(0.25, "Shrink when fewer slots than this are busy...", ge=0, le=1)
    idle_for: float = option(30.0, "...for this many seconds", ge=0)
    cooldown: float = option(10.0, "Seconds between two changes", ge=0)
    step: int = option(1, "Processors added or retired at a time", ge=1)

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.sizes_problem:
            raise ValueError(self.sizes_problem)

    @property
    def sizes_problem(self) -> str:
        bad = self.min_size > self.max_size
        return f"min_size must not be larger than max_size (got {self.min_size} and {self.max_size})" if bad else ""


class Autoscaler(Periodic):
    """Adds processors made by `factory(n)` and retires idle ones (they finish their requests).

    The default factory replicates the pool's first processor (a shallow copy of its step under
    a new name: for an agent, another client of the same model).
    """

    def __init__(
        self,
        pool: ProcessorPool,
        factory: Factory | None = None,
        policy: AutoscalePolicy | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        self.pool = pool
        self.policy = policy or AutoscalePolicy()
        self.clock = clock or pool.clock
        self.interval = self.policy.interval
        if factory is None:
            if not pool.processors:
                raise ValueError(f"pool {pool.name!r} is empty: the autoscaler needs a factory")
            template = pool.processors[0].step

            def factory(n: int) -> Step:
                return template.renamed(f"{template.name}-{n}")

        self.factory: Factory = factory
        self._serial = itertools.count(1)
        self._created: list[Processor] = []
        self._last_change = float("-inf")
        self._idle_since: float | None = None

    async def tick(self) -> None:
        await self.evaluate()

    async def evaluate(self) -> int:
        """Decide once; returns the change in size (+n grown, -n retired, 0)."""
        pool, policy = self.pool, self.policy
        now = self.clock.now()
        size = pool.size
        if size < policy.min_size:
            return await self._grow(policy.min_size - size, "below the minimum size", now)
        if size > policy.max_size:
            return self._shrink(size - policy.max_size, "above the maximum size", now)
        serving = [p for p in pool.processors if not p.draining]
        queued = len(pool.queue)
        cooled = now - self._last_change >= policy.cooldown
        reason = None
        if queued > policy.queue_per_processor * max(size, 1):
            reason = f"{queued} requests waiting for {size} processor(s)"
        elif policy.max_latency is not None:
            latencies = [p.latency for p in serving if p.latency is not None]
            if latencies and (average := statistics.fmean(latencies)) > policy.max_latency:
                reason = f"average latency {average:.3f}s above {policy.max_latency:g}s"
        if reason is not None:
            self._idle_since = None
            if size < policy.max_size and cooled:
                return await self._grow(min(policy.step, policy.max_size - size), reason, now)
            return 0
        slots = sum(p.concurrency for p in serving)
        utilization = pool.in_flight / slots if slots else 0.0
        if queued or utilization >= policy.idle_utilization:
            self._idle_since = None
            return 0
        if self._idle_since is None:
            self._idle_since = now
        if now - self._idle_since >= policy.idle_for and size > policy.min_size and cooled:
            self._idle_since = now  # measure idleness afresh before the next step down
            reason = f"{utilization:.0%} of slots busy for {policy.idle_for:g}s"
            return self._shrink(min(policy.step, size - policy.min_size), reason, now)
        return 0

    async def _grow(self, count: int, reason: str, now: float) -> int:
        before = self.pool.size
        for _ in range(count):
            made = self.factory(next(self._serial))
            if inspect.isawaitable(made):
                made = await made
            assert isinstance(made, Step | Processor), f"the autoscaler's factory returned {type(made).__name__}"
            names = {p.name for p in self.pool.processors}
            if made.name in names:
                made = Processor(made, name=f"{made.name}-{next(self._serial)}") if isinstance(made, Step) else made
            self._created.append(self.pool.add(made))
        return self._changed(before, reason, now)

    def _shrink(self, count: int, reason: str, now: float) -> int:
        before = self.pool.size
        serving = [p for p in self.pool.processors if not p.draining]
        created = set(self._created)
        # Retire what the autoscaler added first (newest first), then the idlest of the others.
        serving.sort(key=lambda p: (p in created, -p.in_flight, p.index), reverse=True)
        for processor in serving[:count]:
            self.pool.retire(processor)
        return self._changed(before, reason, now)

    def _changed(self, before: int, reason: str, now: float) -> int:
        after = self.pool.size
        if after != before:
            self._last_change = now
            self.pool.events.emit("pool_scaled", size=after, previous=before, reason=reason)
        return after - before

    def __repr__(self) -> str:
        return f"Autoscaler({self.pool.name!r}, {self.policy.min_size}..{self.policy.max_size})"
