"""Run events: the one stream that the CLI, HTTP streaming, tracing, metrics and persistence read.

Events are small frozen dataclasses. `path` names where the event happened: the workflow, and
for nested workflows the chain of step names (`outer/inner/step`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

E = TypeVar("E", bound=type)


def _quick_init(cls: E) -> E:
    """Give a frozen slots event class an `__init__` that fills its slots through their
    descriptors, with the same signature as the generated one.

    The dataclass `__init__` of a frozen class sets each field with `object.__setattr__`,
    which costs about twice as much; a streamed run builds several events per step.
    """
    namespace: dict[str, Any] = {"MISSING": dataclasses.MISSING}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for f in dataclasses.fields(cls):
        setter = f"_set_{f.name}"
        namespace[setter] = getattr(cls, f.name).__set__  # the slot's member descriptor
        value = f.name
        if f.default is not dataclasses.MISSING:
            namespace[f"_default_{f.name}"] = f.default
            param = f"{f.name}=_default_{f.name}"
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            param = f"{f.name}=MISSING"
            value = f"_factory_{f.name}() if {f.name} is MISSING else {f.name}"
        else:
            param = f.name
        (keyword if f.kw_only else positional).append(param)
        body.append(f"    {setter}(self, {value})")
    signature = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    exec(f"def __init__({signature}):\n" + "\n".join(body), namespace)  # the code is built from field names only
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[misc]
    return cls


@_quick_init
@dataclass(frozen=True, slots=True)
class RunEvent:
    run_id: str
    path: str
    time: float = field(default_factory=time.time, compare=False, kw_only=True)

    @property
    def type(self) -> str:
        return _EVENT_NAMES[type(self)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (exceptions become their text)."""
        data: dict[str, Any] = {"type": self.type}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, BaseException):
                value = f"{type(value).__name__}: {value}"
            data[name] = value
        return data


@_quick_init
@dataclass(frozen=True, slots=True)
class RunStarted(RunEvent):
    inputs: dict[str, Any] = field(default_factory=dict)
    #: The run this one is nested in (a workflow used as a step), None for a top-level run.
    parent_run_id: str | None = None


@_quick_init
@dataclass(frozen=True, slots=True)
class RunFinished(RunEvent):
    outputs: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    #: Usage counters of the run, nested runs included (e.g. prompt_tokens, completion_tokens).
    usage: dict[str, int] = field(default_factory=dict)


@_quick_init
@dataclass(frozen=True, slots=True)
class RunFailed(RunEvent):
    error: BaseException | None = None
    duration: float = 0.0
    #: What the run used before it failed (tokens are spent even when a run fails).
    usage: dict[str, int] = field(default_factory=dict)


@_quick_init
@dataclass(frozen=True, slots=True)
class StepStarted(RunEvent):
    step: str = ""
    #: The step's firing number within its run (1, 2, ...): (run_id, step, firing) pairs a start
    #: with its finish or failure under concurrency.
    firing: int = 0
    inputs: dict[str, Any] = field(default_factory=dict)


@_quick_init
@dataclass(frozen=True, slots=True)
class StepFinished(RunEvent):
    step: str = ""
    firing: int = 0
    outputs: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0


@_quick_init
@dataclass(frozen=True, slots=True)
class StepFailed(RunEvent):
    """A firing failed (`attempt` says which try; a retried attempt is followed by another)."""

    step: str = ""
    firing: int = 0
    error: BaseException | None = None
    attempt: int = 1


@_quick_init
@dataclass(frozen=True, slots=True)
class OutputSet(RunEvent):
    name: str = ""
    value: Any = None


@_quick_init
@dataclass(frozen=True, slots=True)
class Token(RunEvent):
    """A piece of text streamed by a step (for example a language model's tokens)."""

    step: str = ""
    text: str = ""
    firing: int = 0


@_quick_init
@dataclass(frozen=True, slots=True)
class Custom(RunEvent):
    """Anything else a step wants to report: `name` says what, `data` carries it."""

    step: str = ""
    name: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    firing: int = 0


_EVENT_NAMES: dict[type, str] = {
    RunStarted: "run_started",
    RunFinished: "run_finished",
    RunFailed: "run_failed",
    StepStarted: "step_started",
    StepFinished: "step_finished",
    StepFailed: "step_failed",
    OutputSet: "output_set",
    Token: "token",
    Custom: "custom",
}

EventSink = Callable[[RunEvent], None]
