"""Test doubles for code built on NanoBrain: a scripted model, simulated processors, faults.

`ScriptedModel` stands in for a language model. `SimulatedProcessor` is a step that answers
after a delay on a clock. `FaultyStep` wraps any step and makes a fraction of its calls fail,
slow down or hang. Which calls is decided by a random generator seeded with `seed`, so a run is
reproducible: the n-th call of a given `FaultyStep` always meets the same fate.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from typing import Any

from .core.clock import Clock, RealClock
from .core.errors import NanoBrainError
from .core.steps import Step
from .llm.scripted import ScriptedModel


class InjectedFault(NanoBrainError):
    """A failure made on purpose by `FaultyStep` (retryable, like a server error)."""

    retryable = True


class FaultyStep(Step):
    """`step`, with faults: each call hangs (`hang_rate`), fails (`fail_rate`), is slowed by
    `slow_by` seconds (`slow_rate`), or runs normally. The rates may be changed at any time.

    It stands for `step`: same name (unless `name` is given), inputs, outputs and concurrency.
    Other `options` (a `breaker`, a `retry` policy, ...) are the step options of `Step`.
    """

    def __init__(
        self,
        step: Step,
        *,
        fail_rate: float = 0.0,
        slow_rate: float = 0.0,
        slow_by: float = 1.0,
        hang_rate: float = 0.0,
        error: Callable[[], BaseException] | None = None,
        seed: int = 0,
        clock: Clock | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("concurrency", step.concurrency)
        options.setdefault("description", step.description)
        super().__init__(name or step.name, inputs=step.inputs, outputs=step.outputs, **options)
        self.step = step
        self.fail_rate = fail_rate
        self.slow_rate = slow_rate
        self.slow_by = slow_by
        self.hang_rate = hang_rate
        self.error = error
        self.clock: Clock = clock or RealClock()
        self._random = random.Random(seed)
        self.calls = self.failures = self.slowed = self.hangs = 0
        if fail_rate + slow_rate + hang_rate > 1 or min(fail_rate, slow_rate, hang_rate) < 0:
            raise ValueError("fault rates must be between 0 and 1 and add up to at most 1")

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any] | None:
        self.calls += 1
        draw = self._random.random()
        if draw < self.hang_rate:
            self.hangs += 1
            await asyncio.get_running_loop().create_future()  # never answers; only cancellation ends it
        draw -= self.hang_rate
        if draw < self.fail_rate:
            self.failures += 1
            raise (
                self.error()
                if self.error is not None
                else InjectedFault(f"injected failure in {self.name!r} (call {self.calls})")
            )
        if draw - self.fail_rate < self.slow_rate:
            self.slowed += 1
            await self.clock.sleep(self.slow_by)
        return await self.step.process(inputs)


class SimulatedProcessor(Step):
    """A stand-in processor: waits `latency` seconds on the clock, then answers.

    Input `request`, output `response` (by default `{"processor": name, "request": request}`).
    Every request it completed is in `handled`, in order.
    """

    def __init__(
        self,
        name: str = "simulated",
        *,
        latency: float = 0.0,
        respond: Callable[[str, Any], Any] | None = None,
        clock: Clock | None = None,
        concurrency: int = 1,
    ) -> None:
        super().__init__(name, inputs=["request"], outputs=["response"], concurrency=concurrency)
        self.latency = latency
        self.respond = respond
        self.clock: Clock = clock or RealClock()
        self.handled: list[Any] = []

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any]:
        if self.latency > 0:
            await self.clock.sleep(self.latency)
        request = inputs["request"]
        self.handled.append(request)
        if self.respond is not None:
            return {"response": self.respond(self.name, request)}
        return {"response": {"processor": self.name, "request": request}}


__all__ = ["FaultyStep", "InjectedFault", "ScriptedModel", "SimulatedProcessor"]
