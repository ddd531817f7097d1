"""Helpers for the parallel-processing tests: drive a virtual clock, collect events, build pools."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from nanobrain import VirtualClock
from nanobrain.infrastructure.parallel import ParallelEvent


async def settle(rounds: int = 30) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def drive(
    clock: VirtualClock, tasks: Iterable[asyncio.Future[Any]], *, step: float = 0.05, limit: float = 1e4
) -> None:
    """Advance the clock in steps until every task is done (fails if that takes past `limit`)."""
    pending = list(tasks)
    start = clock.now()
    while not all(t.done() for t in pending):
        assert clock.now() - start < limit, f"tasks still running after {limit} virtual seconds"
        await clock.advance(step)


class Recorder:
    """An `on_event` hook that keeps every event."""

    def __init__(self) -> None:
        self.events: list[ParallelEvent] = []

    def __call__(self, event: ParallelEvent) -> None:
        self.events.append(event)

    def names(self, processor: str | None = None) -> list[str]:
        return [e.name for e in self.events if processor is None or e.data.get("processor") == processor]

    def of(self, name: str) -> list[ParallelEvent]:
        return [e for e in self.events if e.name == name]


# -- referenced from the YAML tests (`tests.infrastructure.parallel.parallel_helpers:NAME`) ----------
from nanobrain import FunctionStep  # noqa: E402
from nanobrain.infrastructure.parallel import Processor, RoundRobin  # noqa: E402


async def shout(text: str) -> str:
    return text.upper() + "!"


SHOUTER = FunctionStep(shout, "shouter")


def make_shouter(n: int) -> FunctionStep:
    return FunctionStep(shout, f"extra{n}")


def always_healthy(processor: Processor) -> bool:
    return True


def is_flaky(error: BaseException) -> bool:
    return isinstance(error, LookupError)


class BackwardsRobin(RoundRobin):
    """A user's balancer: round-robin from the last processor down."""

    def choose(self, candidates, request=None):  # type: ignore[no-untyped-def]
        return super().choose(list(reversed(candidates)), request)
