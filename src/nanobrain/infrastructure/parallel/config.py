"""`kind: parallel`, `kind: parallel_agent` and `kind: parallel_conversational_agent` in workflow documents.

    steps:
      chat:
        kind: parallel_agent
        balancer: fastest_response
        breaker: {failure_rate: 0.5, min_calls: 4, cool_down: 30}
        failover: {attempts: 3}
        deadline: 60
        processors:
          alpha: {kind: agent, model: "openai:gpt-4o-mini"}
          beta: {kind: agent, model: "anthropic:claude-sonnet-4-5", weight: 2}
          gamma: {step: my_package.agents:gamma}

A processor is any step kind (`agent`, `function`, `class`, `workflow`, ...) declared inline, or
`step: package.module:attribute` naming a step (or a function that returns one). Each may add a
`weight` for the weighted balancer; its `concurrency` is its bulkhead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ...config.models import RetryConfig, StepConfig
from ...config.registry import register_step_kind
from ...core.policy import check_bounds, option
from ...core.steps import Step
from .autoscale import AutoscalePolicy
from .breaker import BreakerPolicy
from .health import HealthPolicy
from .rate_limit import RateLimit

if TYPE_CHECKING:
    from ...config.loader import StepBuild
    from .balancers import Balancer
    from .processor import Processor


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BalancerConfig(_Options):
    kind: str = Field(description="round_robin, least_loaded, fastest_response, weighted, power_of_two, pkg.mod:Class")
    seed: int | None = Field(None, description="power_of_two: seed of the random choices")
    weights: dict[str, float] | None = Field(None, description="weighted: weight by processor name")


@dataclass(frozen=True)
class HealthConfig(HealthPolicy):
    """A `HealthPolicy` whose probe is named."""

    probe: str | None = option(None, "package.module:function(processor) -> bool (default: health_check())")


@dataclass(frozen=True)
class AutoscaleConfig(AutoscalePolicy):
    """An `AutoscalePolicy` whose processor factory is named."""

    factory: str | None = option(None, "package.module:function(n) -> step (default: copy the first)")

    def __post_init__(self) -> None:
        check_bounds(self)  # the sizes are checked when the step is built, with its other problems


def _switch(value: Any) -> Any:
    # `true` means the defaults, `false` (or null) means off: one schema type, so that errors
    # inside the mapping are reported at their own path.
    if value is True:
        return {}
    if value is False:
        return None
    return value


def _named(value: Any) -> Any:
    return {"kind": value} if isinstance(value, str) else value


class ParallelStepConfig(StepConfig):
    """Requests spread over a pool of processors, with a balancer, breakers and failover."""

    kind: Literal["parallel"] = "parallel"
    processors: dict[str, dict[str, Any]] = Field(
        min_length=1, description="By name: an inline step (any kind) or {step: package.module:attribute}"
    )
    balancer: Annotated[BalancerConfig, BeforeValidator(_named)] = Field(
        default_factory=lambda: BalancerConfig(kind="round_robin"), description="A name, or {kind: NAME, ...options}"
    )
    breaker: Annotated[BreakerPolicy | None, BeforeValidator(_switch)] = Field(
        default_factory=BreakerPolicy, description="A circuit breaker per processor (false: none)"
    )
    failover: Annotated[RetryConfig | None, BeforeValidator(_switch)] = Field(
        default_factory=RetryConfig, description="Retries on other processors (false: none)"
    )
    rate_limit: RateLimit | None = Field(None, description="For each processor")
    pool_rate_limit: RateLimit | None = Field(None, description="For the pool as a whole")
    pool_concurrency: int | None = Field(None, ge=1, description="Requests running at once in the pool")
    processor_concurrency: int | None = Field(None, ge=1, description="Requests at once per processor")
    queue_size: int = Field(1000, ge=1, description="Requests waiting before producers wait too")
    deadline: float | None = Field(None, gt=0, description="Seconds for a request, retries included")
    attempt_timeout: float | None = Field(None, gt=0, description="Seconds for one attempt on one processor")
    sticky: bool = Field(False, description="Keep a session on one processor while it is healthy")
    batch: bool = Field(False, description="Input `requests` (a list), output `results` (a list)")
    health: HealthConfig | None = None
    autoscale: AutoscaleConfig | None = None
    concurrency: int = Field(1024, ge=1, description="Firings of this step at once in one run")


class ParallelAgentStepConfig(ParallelStepConfig):
    """A parallel step whose processors are agents."""

    kind: Literal["parallel_agent"] = "parallel_agent"  # type: ignore[assignment]


class ParallelConversationalAgentStepConfig(ParallelStepConfig):
    """Agents serving conversations: sticky sessions and (by default) one shared memory."""

    kind: Literal["parallel_conversational_agent"] = "parallel_conversational_agent"  # type: ignore[assignment]
    memory: bool = Field(True, description="Share one conversation memory between the agents")


def build_parallel(config: ParallelStepConfig, build: StepBuild) -> Step | None:
    from .parallel_step import ParallelAgentStep, ParallelConversationalAgentStep, ParallelStep

    before = len(build.ctx.problems)
    processors = [_processor(name, raw, config, build) for name, raw in config.processors.items()]
    balancer = _balancer(config.balancer, build)
    failover = None
    if config.failover is not None:
        failover = config.failover.build(build.ctx, (*build.location, "failover"))
    probe = factory = None
    if config.health is not None and config.health.probe:
        probe = build.ctx.callable(config.health.probe, (*build.location, "health", "probe"), "a probe function")
    if config.autoscale is not None and config.autoscale.sizes_problem:
        build.problem("autoscale", config.autoscale.sizes_problem)
    if config.autoscale is not None and config.autoscale.factory:
        location = (*build.location, "autoscale", "factory")
        factory = build.ctx.callable(config.autoscale.factory, location, "a function(n) returning a step")
    members = [p for p in processors if p is not None]
    if len(build.ctx.problems) > before or len(members) < len(processors):
        return None
    options: dict[str, Any] = dict(
        balancer=balancer,
        breaker=config.breaker,
        failover=failover,
        rate_limit=config.rate_limit,
        pool_rate_limit=config.pool_rate_limit,
        pool_concurrency=config.pool_concurrency,
        processor_concurrency=config.processor_concurrency,
        queue_size=config.queue_size,
        deadline=config.deadline,
        attempt_timeout=config.attempt_timeout,
        health=config.health,
        probe=probe,
        autoscale=config.autoscale,
        factory=factory,
        batch=config.batch,
        **build.options(config),
    )
    if isinstance(config, ParallelConversationalAgentStepConfig):
        return ParallelConversationalAgentStep(build.name, members, memory=config.memory, **options)
    if isinstance(config, ParallelAgentStepConfig):
        return ParallelAgentStep(build.name, members, sticky=config.sticky, **options)
    return ParallelStep(build.name, members, sticky=config.sticky, **options)


def _processor(name: str, raw: dict[str, Any], parent: ParallelStepConfig, build: StepBuild) -> Processor | None:
    from ...agents.agent import Agent
    from ...config.loader import build_step
    from .processor import Processor

    ctx = build.ctx
    location = (*build.location, "processors", name)
    raw = dict(raw)
    # A processor's own `concurrency` (its bulkhead) wins over the step's processor_concurrency.
    concurrency = parent.processor_concurrency if "concurrency" not in raw else None
    weight = raw.pop("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
        ctx.problem((*location, "weight"), f"weight must be a positive number (got {weight!r})")
        return None
    step: Any
    if "step" in raw:
        unknown = sorted(set(raw) - {"step"})
        if unknown:
            ctx.problem((*location, unknown[0]), "a processor given by reference takes only `step` and `weight`")
            return None
        step = ctx.resolve(str(raw["step"]), (*location, "step"), "a step, or a function returning one")
        if step is not None and not isinstance(step, Step) and callable(step):
            step = step()
        if step is None:
            return None
        if not isinstance(step, Step):
            ctx.problem((*location, "step"), f"{raw['step']!r} is not a step (got {type(step).__name__})")
            return None
    else:
        # Declared inline like any step of the workflow, and built the same way.
        step = build_step(name, raw, ctx, location)
        if step is None:
            return None
    if parent.kind != "parallel" and not isinstance(step, Agent):
        ctx.problem(location, f"processor {name!r} is not an agent (use kind: agent, or kind: parallel)")
        return None
    return Processor(step, name=name, weight=float(weight), concurrency=concurrency)


def _balancer(config: BalancerConfig, build: StepBuild) -> Balancer | None:
    from .balancers import BALANCERS, Balancer

    options: dict[str, Any] = {}
    if config.seed is not None:
        options["seed"] = config.seed
    if config.weights is not None:
        options["weights"] = config.weights
    target: Any = BALANCERS.get(config.kind)
    if target is None:
        if ":" not in config.kind:
            build.problem("balancer", f"unknown balancer {config.kind!r} (known: {', '.join(sorted(BALANCERS))})")
            return None
        target = build.callable(config.kind, "balancer", "a Balancer subclass")
        if target is None:
            return None
    if isinstance(target, Balancer):
        return target
    if not (isinstance(target, type) and issubclass(target, Balancer)):
        build.problem("balancer", f"{config.kind!r} is not a Balancer subclass")
        return None
    try:
        return target(**options)
    except TypeError as exc:
        build.problem("balancer", f"balancer {config.kind!r} does not take these options: {exc}")
        return None


register_step_kind("parallel", ParallelStepConfig, build_parallel)
register_step_kind("parallel_agent", ParallelAgentStepConfig, build_parallel)
register_step_kind("parallel_conversational_agent", ParallelConversationalAgentStepConfig, build_parallel)
