"""Steps: `async def process(inputs) -> outputs`, from a class or from a plain function."""

from __future__ import annotations

import copy
import inspect
import re
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

from .closing import AsyncClosing
from .data_units import MISSING, DataUnit
from .executors import DEFAULT_EXECUTOR, Executor, InProcessExecutor, run_blocking
from .resources import Resources
from .retry import RetryPolicy
from .step_policies import Breaker, Limiter
from .triggers import AllDataReceived, Trigger

UnitSpec = Any  # a type, a DataUnit used as a template, or None for "any value"


def as_unit(name: str, spec: UnitSpec) -> DataUnit:
    """Turn a declaration (a type, a template unit, or None) into a template unit named `name`."""
    if isinstance(spec, DataUnit):
        unit = spec.clone(name)
        return unit
    return DataUnit(name, spec)


def _units(declared: Mapping[str, UnitSpec] | Sequence[str] | None) -> dict[str, DataUnit]:
    if declared is None:
        return {}
    if isinstance(declared, Mapping):
        return {name: as_unit(name, spec) for name, spec in declared.items()}
    return {name: DataUnit(name) for name in declared}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Step(AsyncClosing):
    """A unit of work with named input and output units.

    Subclass and override `process`, declaring `inputs` and `outputs` as class attributes
    (name -> type), or build one from a function with `FunctionStep` / `@step`. `timeout`,
    `retry`, `breaker` and `rate_limit` are applied around `process` (see `step_policies`).
    """

    # A subclass's body declares `name -> type` (or a template DataUnit); each instance holds
    # DataUnits. Annotated loosely so that both forms type-check.
    inputs: dict[str, Any]
    outputs: dict[str, Any]

    def __init__(
        self,
        name: str | None = None,
        *,
        inputs: Mapping[str, UnitSpec] | Sequence[str] | None = None,
        outputs: Mapping[str, UnitSpec] | Sequence[str] | None = None,
        trigger: Trigger | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        breaker: Breaker | None = None,
        rate_limit: Limiter | None = None,
        executor: Executor | None = None,
        concurrency: int = 1,
        resources: Resources | Mapping[str, Any] | None = None,
        description: str = "",
    ) -> None:
        self.name = name or _snake(type(self).__name__)
        # Class-level declarations are inherited, so a subclass that only overrides process() keeps them.
        declared_in = inputs if inputs is not None else getattr(type(self), "inputs", None)
        declared_out = outputs if outputs is not None else getattr(type(self), "outputs", None)
        self.inputs = _units(declared_in)
        self.outputs = _units(declared_out)
        self.trigger: Trigger = trigger or AllDataReceived()
        if timeout is not None and timeout <= 0:
            raise ValueError(f"step {self.name!r}: timeout must be positive, got {timeout}")
        self.timeout = timeout
        self.retry = retry
        #: Calls go through this circuit breaker (fail fast while it is open) and rate limit.
        self.breaker = breaker
        self.rate_limit = rate_limit
        self.executor: Executor = executor or DEFAULT_EXECUTOR
        if concurrency < 1:
            raise ValueError(f"step {self.name!r}: concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        try:
            #: The CPUs and memory one firing uses: it waits until its executor has them free.
            self.resources = Resources.of(resources)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"step {self.name!r}: resources: {exc}") from None
        # The engine's own classes (FunctionStep, Workflow) document themselves, not the step.
        own_doc = None if type(self).__module__.startswith("nanobrain.core.") else type(self).__doc__
        self.description = description or inspect.cleandoc(own_doc or "").split("\n\n")[0]

    @property
    def required_inputs(self) -> tuple[str, ...]:
        """Inputs that must have a value before the step can run (no default)."""
        return tuple(name for name, unit in self.inputs.items() if unit.default is MISSING)

    @property
    def cancellable(self) -> bool:
        """Whether a timeout can really stop this step (async work in the event loop can)."""
        return True

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any] | None:
        """Compute output values (by output name) from input values. Override this."""
        raise NotImplementedError(f"step {self.name!r} ({type(self).__name__}) does not implement process()")

    async def aclose(self) -> None:
        """Release what the step holds (model clients, pools). `Workflow.aclose` calls it."""

    def renamed(self, name: str) -> Step:
        """A shallow copy under another name (to use one step twice in a workflow)."""
        twin = copy.copy(self)
        twin.name = name
        return twin

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, inputs={list(self.inputs)}, outputs={list(self.outputs)})"


def _is_model(tp: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def _is_typed_dict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


class FunctionStep(Step):
    """A step made from a plain function (sync or async).

    Inputs are the function's parameters (a parameter with a default is optional). Outputs come
    from the return annotation: one output named `result` (or the name given in `outputs`), the
    fields of a pydantic model or TypedDict, or the keys of a returned dict when `outputs` lists
    several names. A returned mapping may leave an output out; that output is then not set.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        *,
        outputs: str | Sequence[str] | Mapping[str, UnitSpec] | None = None,
        **options: Any,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"FunctionStep needs a callable, got {type(fn).__name__}")
        self.fn = fn
        step_name = name or getattr(fn, "__name__", None) or "step"
        inputs, declared_outputs, self._mode = _signature_units(fn, step_name, outputs)
        super().__init__(step_name, inputs=inputs, outputs=declared_outputs, **options)
        if not self.description:
            self.description = (inspect.getdoc(fn) or "").split("\n\n")[0]
        self._single = next(iter(self.outputs)) if self._mode == "single" else None
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly."""
        return self.fn(*args, **kwargs)

    @property
    def cancellable(self) -> bool:
        return type(self.executor) is InProcessExecutor and self._is_async

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any] | None:
        if type(self.executor) is not InProcessExecutor:
            result = await self.executor.run(self.fn, inputs)
        elif self._is_async:
            result = await self.fn(**inputs)
        elif self.timeout is not None:
            # A blocking function would hold the event loop past its own timeout: give it a thread,
            # so the timeout fires and the run goes on (the thread itself cannot be stopped).
            result = await run_blocking(self.fn, inputs)
        else:
            result = self.fn(**inputs)
            if inspect.isawaitable(result):
                result = await result
        mode = self._mode
        if mode == "single":
            return {self._single: result}  # type: ignore[dict-item]
        if mode == "none":
            return None
        if mode == "model":
            if result is None:
                return None
            return {name: getattr(result, name) for name in self.outputs}
        if result is None:
            return None
        if not isinstance(result, Mapping):
            raise TypeError(
                f"step {self.name!r} must return a mapping with keys {sorted(self.outputs)}, "
                f"got {type(result).__name__}"
            )
        return result


def _signature_units(
    fn: Callable[..., Any], step_name: str, outputs: str | Sequence[str] | Mapping[str, UnitSpec] | None
) -> tuple[dict[str, DataUnit], dict[str, DataUnit], str]:
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to no type checking
        hints = {}
    inputs: dict[str, DataUnit] = {}
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD, parameter.POSITIONAL_ONLY):
            raise TypeError(
                f"step {step_name!r}: parameter {parameter.name!r} must be a named parameter "
                "(no *args, **kwargs or positional-only parameters)"
            )
        default = MISSING if parameter.default is parameter.empty else parameter.default
        inputs[parameter.name] = DataUnit(parameter.name, hints.get(parameter.name), default=default)

    returns = hints.get("return") if "return" in hints else MISSING
    if isinstance(outputs, str):
        return inputs, {outputs: DataUnit(outputs, None if returns is MISSING else returns)}, "single"
    if outputs is not None:
        declared = _units(outputs)
        if not declared:
            return inputs, {}, "none"
        return inputs, declared, "mapping"
    if returns is None or returns is type(None):
        return inputs, {}, "none"
    if returns is not MISSING and _is_model(returns):
        fields = returns.model_fields
        return inputs, {n: DataUnit(n, f.annotation) for n, f in fields.items()}, "model"
    if returns is not MISSING and _is_typed_dict(returns):
        field_hints = typing.get_type_hints(returns)
        return inputs, {n: DataUnit(n, t) for n, t in field_hints.items()}, "mapping"
    return inputs, {"result": DataUnit("result", None if returns is MISSING else returns)}, "single"


@overload
def step(fn: Callable[..., Any], /) -> FunctionStep: ...


@overload
def step(
    *, name: str | None = None, outputs: str | Sequence[str] | Mapping[str, UnitSpec] | None = None, **options: Any
) -> Callable[[Callable[..., Any]], FunctionStep]: ...


def step(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make a step from a function: `@step` or `@step(name=..., outputs=..., timeout=...)`."""
    if fn is not None:
        return FunctionStep(fn)

    def decorate(function: Callable[..., Any]) -> FunctionStep:
        return FunctionStep(function, **options)

    return decorate
