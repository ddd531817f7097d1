"""Resource-aware admission: steps declare the CPUs and memory they use, executors admit them
only while those needs fit their capacity, so work waits instead of overcommitting a machine."""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import CapacityExceeded

if TYPE_CHECKING:
    from .steps import Step

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e(\d+))?\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_memory(value: str | float) -> float:
    """Bytes from `512MiB`, `1.5GB`, `2e9` or a number of bytes."""
    if isinstance(value, bool):
        raise ValueError(f"memory must be a size like '512MiB' or a number of bytes, got {value!r}")
    if isinstance(value, int | float):
        size = float(value)
    else:
        match = _SIZE.match(value)
        unit = match.group(3).lower() if match else ""
        if match is None or unit not in _UNITS:
            raise ValueError(f"memory must be a size like '512MiB', '2GB' or a number of bytes, got {value!r}")
        size = float(match.group(1)) * 10 ** int(match.group(2) or 0) * _UNITS[unit]
    if size < 0 or math.isnan(size):
        raise ValueError(f"memory cannot be negative, got {value!r}")
    return size


def _size(n: float) -> str:
    if math.isinf(n):
        return "unlimited"
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:g} {unit}"
    return f"{n:g} B"


@dataclass(frozen=True)
class Resources:
    """CPUs and memory (bytes): what a step needs, or what an executor offers (`math.inf`: no limit)."""

    cpu: float = 0.0
    memory: float = 0.0

    def __post_init__(self) -> None:
        cpu = float(self.cpu)
        if cpu < 0 or math.isnan(cpu):
            raise ValueError(f"cpu cannot be negative, got {self.cpu!r}")
        object.__setattr__(self, "cpu", cpu)
        object.__setattr__(self, "memory", parse_memory(self.memory))

    @classmethod
    def of(cls, value: Resources | Mapping[str, Any] | None) -> Resources | None:
        """`value` as Resources: from a mapping like `{"cpu": 1, "memory": "512MiB"}`, or None."""
        if value is None or isinstance(value, Resources):
            return value
        unknown = set(value) - {"cpu", "memory"}
        if unknown:
            raise ValueError(f"resources are cpu and memory, got {', '.join(sorted(map(repr, unknown)))}")
        return cls(**value)

    def fits_in(self, capacity: Resources) -> bool:
        return self.cpu <= capacity.cpu and self.memory <= capacity.memory

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu + other.cpu, self.memory + other.memory)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(max(0.0, self.cpu - other.cpu), max(0.0, self.memory - other.memory))

    def __str__(self) -> str:
        cpu = "unlimited" if math.isinf(self.cpu) else f"{self.cpu:g}"
        parts = [f"cpu {cpu}" if self.cpu else "", f"memory {_size(self.memory)}" if self.memory else ""]
        return ", ".join(part for part in parts if part) or "nothing"


def machine_capacity() -> Resources:
    """The default capacity: this machine's CPUs; memory is not limited unless configured."""
    return Resources(cpu=os.cpu_count() or 1, memory=math.inf)


class Admission:
    """Counts the needs of admitted work against a capacity. Work that does not fit waits, first
    come first served (a large request is not overtaken forever by small ones); work that could
    never fit is refused at once."""

    def __init__(self, capacity: Resources, *, owner: str = "the executor") -> None:
        self.capacity = capacity
        self.owner = owner
        self.in_use = Resources()
        self._waiting: deque[tuple[Resources, asyncio.Future[None]]] = deque()

    def refusal(self, needs: Resources) -> str | None:
        """Why `needs` can never be admitted, or None."""
        if needs.fits_in(self.capacity):
            return None
        return f"needs {needs} but {self.owner} has {self.capacity} in all"

    @asynccontextmanager
    async def admit(self, needs: Resources, *, who: str = "the step") -> AsyncIterator[None]:
        """Wait until `needs` fits beside the work already admitted; release it on exit."""
        reason = self.refusal(needs)
        if reason is not None:
            raise CapacityExceeded(f"{who} {reason}")
        if self._waiting or not (self.in_use + needs).fits_in(self.capacity):
            granted = asyncio.get_running_loop().create_future()
            self._waiting.append((needs, granted))
            try:
                await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():
                    self._release(needs)  # admitted just as the waiter gave up: hand it on
                else:
                    if (needs, granted) in self._waiting:
                        self._waiting.remove((needs, granted))
                    self._grant()  # a smaller request behind this one may fit now
                raise
        else:
            self.in_use = self.in_use + needs
        try:
            yield
        finally:
            self._release(needs)

    def _release(self, needs: Resources) -> None:
        self.in_use = self.in_use - needs
        self._grant()

    def _grant(self) -> None:
        while self._waiting:
            needs, granted = self._waiting[0]
            if not (self.in_use + needs).fits_in(self.capacity):
                return
            self._waiting.popleft()
            if not granted.done():
                self.in_use = self.in_use + needs
                granted.set_result(None)


def admitted(
    step: Step, process: Callable[[dict[str, Any]], Any]
) -> Callable[[dict[str, Any]], Awaitable[Any]]:
    """`process` (the step's, maybe wrapped), called only once the step's executor admits the resources it declares."""
    needs = step.resources
    if needs is None:
        return process
    executor = step.executor
    who = f"step {step.name!r}"

    async def admitted_process(inputs: dict[str, Any]) -> Any:
        async with executor.admit(needs, who=who):
            return await process(inputs)

    return admitted_process


__all__ = ["Admission", "Resources", "admitted", "machine_capacity", "parse_memory"]
