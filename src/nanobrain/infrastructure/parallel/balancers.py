"""Load balancers: interchangeable strategies that pick a processor for a request.

The pool passes only candidates that can take the request now: their breaker allows it, they are
healthy, within their rate limits, and have a free slot. A balancer just picks one. To add a
strategy, subclass `Balancer` and implement `choose`.

A `paced` balancer (`Weighted` with unequal weights) gives each first attempt its turn among
all the processors that can serve, busy or not (`turn`); the request then waits for that
processor. So a traffic split holds when the processors are saturated, too.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from .processor import Processor
from .request_queue import Request


class Balancer:
    """Base class: `choose(candidates, request)` returns one of the candidates (never empty)."""

    name = "custom"
    #: Whether the dispatcher asks `turn` for first attempts.
    paced = False

    def choose(self, candidates: Sequence[Processor], request: Request | None = None) -> Processor:
        raise NotImplementedError(f"{type(self).__name__} does not implement choose()")

    def turn(self, serving: Sequence[Processor], request: Request | None = None) -> Processor | None:
        """Paced balancers: the processor whose turn this request is, among all that can serve
        (busy or not); the request waits for it. None: `choose` among the free ones."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class RoundRobin(Balancer):
    """Each processor in turn (in pool order), skipping those that cannot take the request."""

    name = "round_robin"

    def __init__(self) -> None:
        self._last = -1

    def choose(self, candidates: Sequence[Processor], request: Request | None = None) -> Processor:
        last = self._last
        after: Processor | None = None
        lowest = candidates[0]
        for processor in candidates:
            index = processor.index
            if index > last and (after is None or index < after.index):
                after = processor
            if index < lowest.index:
                lowest = processor
        chosen = after if after is not None else lowest
        self._last = chosen.index
        return chosen


class LeastLoaded(Balancer):
    """The processor with the fewest requests in flight per slot (then the fewest calls so far)."""

    name = "least_loaded"

    def choose(self, candidates: Sequence[Processor], request: Request | None = None) -> Processor:
        return min(candidates, key=lambda p: (p.in_flight / p.concurrency, p.calls))


class FastestResponse(Balancer):
    """The processor expected to answer soonest: moving-average latency times (in flight + 1).

    A processor without a measured latency yet counts as fastest, so each one gets tried. Scaling
    by the requests in flight spreads load over processors of equal speed.
    """

    name = "fastest_response"

    def choose(self, candidates: Sequence[Processor], request: Request | None = None) -> Processor:
        return min(candidates, key=_expected_wait)


class Weighted(Balancer):
    """Smooth weighted round-robin (as nginx does it): a processor of weight 3 gets three times
    the requests of one of weight 1, interleaved. Weights come from the processors or `weights`.

    Unequal weights are a traffic split that holds at saturation too: each request gets its
    turn among the processors that can serve (healthy, breaker closed, within limits), busy or
    not, and waits for that processor. Retries go to any free processor they have not tried,
    and with equal weights requests go to whichever processor is free, in turn.
    """

    name = "weighted"
    paced = True

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        self.weights = dict(weights or {})
        for name, weight in self.weights.items():
            if weight <= 0:
                raise ValueError(f"weight of {name!r} must be positive, got {weight}")
        self._current: dict[str, float] = {}

    def choose(self, candidates: Sequence[Processor], request: Request | None = None) -> Processor:
        current, weights = self._current, [self.weights.get(p.name, p.weight) for p in candidates]
        scores = [current.get(p.name, 0.0) + w for p, w in zip(candidates, weights, strict=True)]
        best = max(range(len(candidates)), key=scores.__getitem__)  # the first of equals
        for processor, score in zip(candidates, scores, strict=True):
            current[processor.name] = score
        current[candidates[best].name] -= sum(weights)
        return candidates[best]

    def turn(self, serving: Sequence[Processor], request: Request | None = None) -> Processor | None:
        if len({self.weights.get(p.name, p.weight) for p in serving}) < 2:
            return None  # no split to keep: do not make requests wait
        return self.choose(serving, request)

    def __repr__(self) -> str:
        return f"Weighted({self.weights!r})"


class PowerOfTwoChoices(Balancer):
    """Two candidates drawn at random (seeded); the one expected to answer sooner wins: moving-average
    latency times (in flight + 1), as for `FastestResponse`, then the less loaded. Unmeasured
    processors count as fast, so that all get tried; with no latencies known, load decides.

    Drawing two instead of scanning all keeps a choice O(1) and avoids sending every request to
    the same momentarily best processor."""

    name = "power_of_two"

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._random = random.Random(seed)

    def choose(self, candidates: Sequence[Processor], request: Request | None = None) -> Processor:
        if len(candidates) == 1:
            return candidates[0]
        first, second = self._random.sample(candidates, 2)
        return min(first, second, key=_expected_wait)

    def __repr__(self) -> str:
        return f"PowerOfTwoChoices(seed={self.seed!r})"


def _expected_wait(p: Processor) -> tuple[float, float, int]:
    load = p.in_flight / p.concurrency
    return ((p.latency or 0.0) * (load + 1), load, p.calls)


BALANCERS: dict[str, type[Balancer]] = {
    cls.name: cls for cls in (RoundRobin, LeastLoaded, FastestResponse, Weighted, PowerOfTwoChoices)
}


def make_balancer(spec: Balancer | str | None = None, **options: Any) -> Balancer:
    """A balancer from an instance, a registered name (`round_robin`, ...), or None (round-robin)."""
    if spec is None:
        return RoundRobin()
    if isinstance(spec, Balancer):
        return spec
    cls = BALANCERS.get(spec)
    if cls is None:
        raise ValueError(f"unknown balancer {spec!r} (known: {', '.join(sorted(BALANCERS))})")
    return cls(**options)
