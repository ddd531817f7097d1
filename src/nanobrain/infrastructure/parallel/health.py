"""Health checks: periodic probes mark processors unhealthy (no traffic) and healthy again."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ...core.clock import Clock
from ...core.policy import POLICY_CONFIG, check_bounds, option
from ...core.workflow import Workflow
from .deadlines import Deadline
from .errors import AttemptTimeout
from .periodic import Periodic
from .processor import Processor

if TYPE_CHECKING:
    from .pool import ProcessorPool

Probe = Callable[[Processor], "Awaitable[bool] | bool"]


@dataclass(frozen=True)
class HealthPolicy:
    """Probe every `interval` seconds; a probe failing (false, an error, or no answer within
    `timeout`) `unhealthy_after` times in a row marks the processor unhealthy, and `healthy_after`
    successes in a row mark it healthy again."""

    __pydantic_config__: ClassVar[dict[str, Any]] = POLICY_CONFIG

    interval: float = option(10.0, "Seconds between two probes", gt=0)
    timeout: float = option(5.0, "Seconds a probe may take", gt=0)
    unhealthy_after: int = option(2, "Failed probes in a row that mark a processor unhealthy", ge=1)
    healthy_after: int = option(1, "Good probes in a row that mark it healthy again", ge=1)

    def __post_init__(self) -> None:
        check_bounds(self)


async def default_probe(processor: Processor) -> bool:
    """Ask the step's own `health_check()` (sync or async; None counts as healthy).

    Agents probe their model cheaply (a model list, the model file), so a dead endpoint is found
    without a request failing first. A workflow without its own check is healthy when every step
    in it that has one is. A step with no check anywhere counts as healthy.
    """
    step = processor.step
    checks = [getattr(step, "health_check", None)]
    if checks[0] is None and isinstance(step, Workflow):
        checks = [getattr(inner, "health_check", None) for inner in step.walk()[1:]]
    for check in checks:
        if check is None:
            continue
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if not (result is None or bool(result)):
            return False
    return True


class HealthChecker(Periodic):
    """Probes the processors of a pool. `await checker.check()` runs one round (tests, CLIs);
    `start()`/`stop()` (or `async with`) run rounds every `interval` seconds of the clock."""

    def __init__(
        self,
        pool: ProcessorPool,
        policy: HealthPolicy | None = None,
        *,
        probe: Probe | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        self.pool = pool
        self.policy = policy or HealthPolicy()
        self.probe: Probe = probe or default_probe
        self.clock = clock or pool.clock
        self.interval = self.policy.interval
        self.rounds = 0
        self._failures: dict[Processor, int] = {}
        self._successes: dict[Processor, int] = {}

    async def tick(self) -> None:
        await self.check()

    async def check(self) -> dict[str, bool]:
        """Probe every processor once, concurrently; returns who is healthy now."""
        processors = [p for p in self.pool.processors if not p.draining]
        outcomes = await asyncio.gather(*(self._probe(p) for p in processors))
        for processor, (ok, reason) in zip(processors, outcomes, strict=True):
            self._apply(processor, ok, reason)
        self.rounds += 1
        return {p.name: p.healthy for p in processors}

    async def _probe(self, processor: Processor) -> tuple[bool, str]:
        clock, timeout = self.clock, self.policy.timeout
        try:
            async with Deadline(clock, clock.now() + timeout, lambda: AttemptTimeout(processor.name, timeout)):
                result: Any = self.probe(processor)
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:  # a probe that raises is a failed probe
            return False, f"probe raised {type(exc).__name__}: {exc}"
        return (True, "") if result else (False, "probe answered false")

    def _apply(self, processor: Processor, ok: bool, reason: str) -> None:
        policy = self.policy
        if ok:
            self._failures[processor] = 0
            successes = self._successes[processor] = self._successes.get(processor, 0) + 1
            if not processor.healthy and successes >= policy.healthy_after:
                self.pool.set_healthy(processor, True, f"{successes} probe(s) succeeded")
        else:
            self._successes[processor] = 0
            failures = self._failures[processor] = self._failures.get(processor, 0) + 1
            if processor.healthy and failures >= policy.unhealthy_after:
                self.pool.set_healthy(processor, False, reason)

    def readiness(self) -> dict[str, Any]:
        """The pool's readiness summary, with how many probe rounds ran."""
        return {**self.pool.readiness(), "health_rounds": self.rounds}

    def __repr__(self) -> str:
        return f"HealthChecker({self.pool.name!r}, every {self.interval:g}s)"
