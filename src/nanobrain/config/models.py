"""The configuration schema, as pydantic models. The JSON Schema for editors comes from these."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..core.policy import option
from ..core.resources import parse_memory
from ..core.retry import RetryPolicy

if TYPE_CHECKING:
    from .context import BuildContext
    from .yaml_source import Location


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class UnitConfig(_Strict):
    """A data unit: `type` is a type expression (`str`, `list[int]`, `pkg.mod:Model`)."""

    type: str | None = Field(None, description="Type of the values, e.g. str, list[int], pkg.mod:Model")
    kind: Literal["memory", "string", "stream", "file", "persistent", "persistent_stream"] = "memory"
    default: Any = Field(None, description="Value used when nothing is linked or sent (makes the unit optional)")
    maxsize: int | None = Field(None, ge=1, description="Stream units: buffer size before producers wait")
    path: str | None = Field(None, description="File units: where the value is stored")
    format: Literal["json", "text", "bytes"] = "json"
    store: str | None = Field(
        None,
        description="Persistent units: store URL (sqlite+aiosqlite:///state.db, postgresql+asyncpg://..., redis://...)",
    )
    key: str | None = Field(None, description="Persistent units: the key the value (or stream) is stored under")
    encrypted: bool = Field(
        False, description="Persistent units: encrypt at rest with the key in NANOBRAIN_ENCRYPTION_KEY"
    )
    description: str = ""


UnitDecl = str | UnitConfig | None


class TriggerConfig(_Strict):
    kind: Literal["on_update", "all_data_received", "all", "condition", "manual", "interval", "timer"]
    seconds: float | None = Field(None, gt=0, description="interval: seconds between firings")
    count: int | None = Field(None, ge=1, description="interval: how many firings")
    immediately: bool = False
    predicate: str | None = Field(None, description="condition: package.module:function over the inputs dict")


TriggerDecl = Literal["on_update", "all_data_received", "all", "manual"] | TriggerConfig


@dataclass(frozen=True)
class RetryConfig(RetryPolicy):
    """`retry:` of a step, `failover:` of a parallel step: a `RetryPolicy` that names its extra
    exception classes and predicate (imported when the workflow is built)."""

    # Named here (imported when built); the policy itself holds the classes and the predicate.
    retry_on: tuple[str, ...] = option(  # type: ignore[assignment]
        (), "More exception classes to retry: builtin names or package.module:Class"
    )
    retry_if: str | None = option(  # type: ignore[assignment]
        None, "package.module:predicate(error) accepting more errors to retry"
    )

    def build(self, ctx: BuildContext, location: Location) -> RetryPolicy:
        """The policy, with its references imported (a bad one is a problem at its location)."""
        classes: list[type[BaseException]] = []
        for i, name in enumerate(self.retry_on):
            target = getattr(builtins, name, None) if ":" not in name else ctx.resolve(name, (*location, "retry_on", i))
            if isinstance(target, type) and issubclass(target, BaseException):
                classes.append(target)
            elif ":" not in name or target is not None:
                ctx.problem((*location, "retry_on", i), f"{name!r} is not an exception class")
        retry_if = None
        if self.retry_if:
            retry_if = ctx.callable(self.retry_if, (*location, "retry_if"), "a predicate over errors")
        values = {f.name: getattr(self, f.name) for f in fields(RetryPolicy)}
        return RetryPolicy(**{**values, "retry_on": tuple(classes), "retry_if": retry_if})


class ResourcesConfig(_Strict):
    """CPUs and memory: what one firing of a step uses, or what an executor offers."""

    cpu: float = Field(0, ge=0, description="CPUs (may be fractional)")
    memory: str | float = Field(0, description="Memory: a size like 512MiB or 2GB, or a number of bytes")

    @field_validator("memory")
    @classmethod
    def _size(cls, value: str | float) -> str | float:
        parse_memory(value)
        return value


class ExecutorConfig(_Strict):
    kind: Literal["inprocess", "thread", "process", "dask"]
    max_workers: int | None = Field(None, ge=1)
    address: str | None = Field(
        None, description="dask: scheduler address like tcp://host:8786 (default: LocalCluster)"
    )
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    processes: bool = True
    capacity: ResourcesConfig | None = Field(
        None,
        description="What steps that declare resources may use at once (default: this machine's CPUs, "
        "memory not limited; dask: the workers' declared resources, else the cluster's threads and memory)",
    )
    no_workers_timeout: float = Field(
        60, gt=0, description="dask: fail a step whose task has had no worker to run it for this many seconds"
    )


ExecutorDecl = str | ExecutorConfig


class StepConfig(_Strict):
    """Options every step kind accepts."""

    kind: str = "function"
    description: str = ""
    trigger: TriggerDecl | None = None
    timeout: float | None = Field(None, gt=0, description="Seconds before the step is cancelled")
    retry: RetryConfig | None = None
    executor: ExecutorDecl | None = Field(None, description="inprocess, thread, process, dask, or a named executor")
    concurrency: int = Field(1, ge=1, description="How many firings of this step may run at once")
    resources: ResourcesConfig | None = Field(
        None, description="CPUs and memory one firing uses; it waits until its executor has them free"
    )


class FunctionStepConfig(StepConfig):
    """A plain function (sync or async); inputs and outputs come from its signature."""

    kind: Literal["function"] = "function"
    function: str = Field(description="package.module:function")
    outputs: str | list[str] | None = Field(None, description="Output name(s) when not derived from the return type")


class ClassStepConfig(StepConfig):
    """A Step subclass, constructed with `options` as keyword arguments."""

    kind: Literal["class"] = "class"
    class_: str = Field(alias="class", description="package.module:StepSubclass")
    options: dict[str, Any] = Field(default_factory=dict)


class WorkflowStepConfig(StepConfig):
    """A nested workflow: another file (relative to this one) or an inline definition."""

    kind: Literal["workflow"] = "workflow"
    file: str | None = None
    workflow: dict[str, Any] | None = None


class LinkConfig(_Strict):
    source: str = Field(alias="from", description="step.output or inputs.NAME")
    target: str = Field(alias="to", description="step.input or outputs.NAME")
    transform: str | None = Field(None, description="package.module:function applied to each value")
    when: str | None = Field(None, description="package.module:predicate; the value travels only when it is true")
    maxsize: int | None = Field(None, ge=1, description="Make this a bounded queue link")
    max_iterations: int | None = Field(None, ge=1, description="Bound for a link that closes a cycle")
    fan_in: Literal["merge", "collect", "collect_dict"] | None = Field(
        None,
        description="How links into one step input combine: merge (fire per value), collect (one list with a "
        "value from each link), collect_dict (a dict keyed by source step)",
    )


class WorkflowConfig(_Strict):
    """A workflow document."""

    kind: Literal["workflow"] = "workflow"
    name: str = Field(min_length=1)
    description: str = ""
    inputs: dict[str, UnitDecl] = Field(default_factory=dict)
    outputs: dict[str, UnitDecl] = Field(default_factory=dict)
    executors: dict[str, ExecutorConfig] = Field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Steps by name; see step kinds")
    links: list[LinkConfig] = Field(default_factory=list)
    durable: bool = Field(
        False,
        description="Journal every run (SQLite under NANOBRAIN_HOME or NANOBRAIN_DATABASE_URL) so that a run "
        "survives a crash and can wait for input across restarts (`nanobrain runs resume/send`)",
    )
