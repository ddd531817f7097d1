"""Resilience for a single step, as wrappers around it (the pool has all of this built in).

A wrapper is a step with the same name, inputs and outputs as the step it wraps, whose `process`
adds one concern around the inner `process`, like middleware around an app. They nest:

    guarded = BreakerStep(RateLimitedStep(call_api, TokenBucket(5, clock=clock)), CircuitBreaker("api"))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...core.steps import Step
from .breaker import CircuitBreaker
from .rate_limit import TokenBucket


class StepWrapper(Step):
    """A step that stands for `step`: same name, inputs, outputs and concurrency."""

    def __init__(self, step: Step, *, name: str | None = None) -> None:
        super().__init__(
            name or step.name,
            inputs=step.inputs,
            outputs=step.outputs,
            concurrency=step.concurrency,
            description=step.description,
        )
        self.step = step

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any] | None:
        return await self.step.process(inputs)


class BreakerStep(StepWrapper):
    """Calls go through a circuit breaker: while it is open they fail at once with `CircuitOpen`."""

    def __init__(self, step: Step, breaker: CircuitBreaker | None = None, *, name: str | None = None) -> None:
        super().__init__(step, name=name)
        self.breaker = breaker or CircuitBreaker(self.name)

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any] | None:
        return await self.breaker.call(lambda: self.step.process(inputs))


class RateLimitedStep(StepWrapper):
    """Each call first takes a token from the bucket, waiting (on the bucket's clock) when it is empty."""

    def __init__(self, step: Step, bucket: TokenBucket, *, name: str | None = None) -> None:
        super().__init__(step, name=name)
        self.bucket = bucket

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any] | None:
        await self.bucket.take()
        return await self.step.process(inputs)
