"""Triggers decide when a step runs.

A trigger is configuration; each run arms it into a `TriggerState` that sees every value
arriving at the step's inputs and answers with the snapshot to run on, or None.
No trigger drops or merges updates unless the user configured it to.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from .data_units import MISSING, DataUnit

Snapshot = dict[str, Any]
#: Input names, in declaration order.
Ports = tuple[str, ...]


class TriggerState:
    """Per-run state of a trigger. `offer` is called once per value that reaches an input."""

    __slots__ = ("required", "units")

    def __init__(self, units: Mapping[str, DataUnit], required: Ports) -> None:
        self.units = units
        self.required = required

    def snapshot(self) -> Snapshot | None:
        """Current input values, or None while a required input has no value."""
        values: Snapshot = {}
        for name, unit in self.units.items():
            value = unit._value
            if value is MISSING:
                if name in self.required:
                    return None
                continue
            values[name] = value
        return values

    def offer(self, port: str, value: Any) -> Snapshot | None:
        raise NotImplementedError

    def dump(self) -> dict[str, Any]:
        """What this state holds besides the unit values (empty for stateless triggers)."""
        return {}

    def load(self, state: Mapping[str, Any]) -> None:
        """Take back what `dump` returned."""


class Trigger:
    """Base class. Subclasses say how offered values turn into firings."""

    kind = "trigger"
    #: Whether values reaching the inputs can fire the step (False for timer and manual triggers).
    fires_on_input = True

    def arm(self, units: Mapping[str, DataUnit], required: Ports, connected: Ports) -> TriggerState:
        """This trigger's state for one run: `units` are the run's input units, `required` the
        inputs that need a value, `connected` the inputs that links feed."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.kind


class _OnUpdateState(TriggerState):
    __slots__ = ()

    def offer(self, port: str, value: Any) -> Snapshot | None:
        if len(self.units) == 1:
            return {port: value}
        return self.snapshot()


class OnUpdate(Trigger):
    """Fire on every update of any input, once all required inputs have a value."""

    kind = "on_update"

    def arm(self, units: Mapping[str, DataUnit], required: Ports, connected: Ports) -> _OnUpdateState:
        return _OnUpdateState(units, required)


#: The `waiting` of every join state with a single input (shared, never written).
_NO_QUEUES: dict[str, deque[Any]] = {}


class _AllDataState(TriggerState):
    __slots__ = ("connected", "empty", "waiting")

    def __init__(self, units: Mapping[str, DataUnit], required: Ports, connected: Ports) -> None:
        # Armed once per step per run: the base's two fields are set here without a super() call.
        self.units = units
        self.required = required
        self.connected = connected
        # Only a real join (two or more linked inputs) needs queues. `empty` counts the inputs
        # still waiting for a value, so each arriving value costs O(1) however wide the join.
        self.waiting: dict[str, deque[Any]] = _NO_QUEUES
        if len(connected) > 1:
            self.waiting = {name: deque() for name in connected}
        self.empty = len(self.waiting)

    def offer(self, port: str, value: Any) -> Snapshot | None:
        waiting = self.waiting
        if not waiting:
            if len(self.units) == 1:
                return {port: value}
            snap = self.snapshot() or {}
            snap[port] = value
            return snap
        queue = waiting.get(port)
        if queue is None:  # an input nobody links to was set directly: just remember it
            return None
        if not queue:
            self.empty -= 1
        queue.append(value)
        if self.empty:
            return None
        # Every linked input has a fresh value: take the oldest of each (a zip), so that
        # nothing is lost when one input runs ahead of the others.
        snap = {}
        for name, unit in self.units.items():
            if unit._value is not MISSING:
                snap[name] = unit._value
        for name, q in waiting.items():
            snap[name] = q.popleft()
            if not q:
                self.empty += 1
        return snap

    def dump(self) -> dict[str, Any]:
        """Values that arrived ahead of the other inputs, per input, oldest first."""
        waiting = {name: list(q) for name, q in self.waiting.items() if q}
        return {"waiting": waiting} if waiting else {}

    def load(self, state: Mapping[str, Any]) -> None:
        for name, values in state.get("waiting", {}).items():
            queue = self.waiting.get(name)
            if queue is None:
                raise ValueError(f"a join has no linked input {name!r} to hold waiting values")
            queue.clear()
            queue.extend(values)
        self.empty = sum(1 for q in self.waiting.values() if not q)


class AllDataReceived(Trigger):
    """A join: fire when every connected input has a fresh value, then re-arm.

    Values are paired in arrival order per input, so an input that runs ahead is queued, not
    overwritten.
    """

    kind = "all_data_received"

    def arm(self, units: Mapping[str, DataUnit], required: Ports, connected: Ports) -> _AllDataState:
        return _AllDataState(units, required, connected)


class _ConditionState(TriggerState):
    __slots__ = ("predicate",)

    def __init__(self, units: Mapping[str, DataUnit], required: Ports, predicate: Callable[[Snapshot], bool]) -> None:
        super().__init__(units, required)
        self.predicate = predicate

    def offer(self, port: str, value: Any) -> Snapshot | None:
        snap = self.snapshot()
        if snap is None or not self.predicate(snap):
            return None
        return snap


class Condition(Trigger):
    """Fire on an update when `predicate(inputs: dict) -> bool` holds."""

    kind = "condition"

    def __init__(self, predicate: Callable[[Snapshot], bool]) -> None:
        if not callable(predicate):
            raise TypeError(f"condition trigger needs a callable predicate, got {type(predicate).__name__}")
        self.predicate = predicate

    def arm(self, units: Mapping[str, DataUnit], required: Ports, connected: Ports) -> _ConditionState:
        return _ConditionState(units, required, self.predicate)

    def describe(self) -> str:
        return f"condition({getattr(self.predicate, '__name__', 'predicate')})"


class _SilentState(TriggerState):
    __slots__ = ()

    def offer(self, port: str, value: Any) -> Snapshot | None:
        return None


class Manual(Trigger):
    """Fire only when asked: `handle.fire(step_name)` on a running workflow."""

    kind = "manual"
    fires_on_input = False

    def arm(self, units: Mapping[str, DataUnit], required: Ports, connected: Ports) -> _SilentState:
        return _SilentState(units, required)


class Interval(Trigger):
    """Fire every `seconds` (on the run's clock) with the current inputs; `count` bounds the firings.

    In a request/response `run`, an interval trigger needs a `count`; without one it belongs to
    a long-lived `start()`.
    """

    kind = "interval"
    fires_on_input = False

    def __init__(self, seconds: float, *, count: int | None = None, immediately: bool = False) -> None:
        if seconds <= 0:
            raise ValueError(f"interval trigger needs seconds > 0, got {seconds}")
        if count is not None and count < 1:
            raise ValueError(f"interval trigger count must be at least 1, got {count}")
        self.seconds = seconds
        self.count = count
        self.immediately = immediately

    def arm(self, units: Mapping[str, DataUnit], required: Ports, connected: Ports) -> _SilentState:
        return _SilentState(units, required)

    def describe(self) -> str:
        bound = f", count={self.count}" if self.count else ""
        return f"interval({self.seconds:g}s{bound})"


TRIGGER_KINDS: dict[str, type[Trigger]] = {
    "on_update": OnUpdate,
    "all_data_received": AllDataReceived,
    "all": AllDataReceived,
    "condition": Condition,
    "manual": Manual,
    "interval": Interval,
    "timer": Interval,
}
