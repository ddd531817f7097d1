"""Steps that spread requests over a pool of processors: `ParallelStep` and its agent variants.

A `ParallelStep` looks like one of its processors to the workflow (same inputs and outputs), and
each firing is one request to the pool. With `batch=True` it takes a list of requests (input
`requests`) and returns the list of results (output `results`), in order.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Unpack

from ...agents.agent import Agent, ConversationMemory
from ...core.steps import Step
from .autoscale import AutoscalePolicy, Autoscaler, Factory
from .health import HealthChecker, HealthPolicy, Probe
from .pool import ProcessorPool, RequestOptions
from .processor import Processor

#: The keywords of `ParallelStep` that build its pool: those of `ProcessorPool` (its signature is
#: the one list of them), less the ones the step sets itself (`concurrency` is `pool_concurrency`).
POOL_OPTIONS = frozenset(inspect.signature(ProcessorPool).parameters) - {"processors", "name", "concurrency"}


class ParallelStep(Step):
    """Requests to this step go to a pool of processors (steps, agents or workflows).

    Give `processors` and the pool's options, or a ready `pool`. The pool options are the
    keywords of `ProcessorPool` (`balancer`, `breaker`, `failover`, `rate_limit`, `deadline`,
    `attempt_timeout`, `sticky`, `clock`, `on_event`, ...: see there), except that the pool's
    `concurrency` is called `pool_concurrency` here. The other keywords (`timeout`, `retry`,
    `trigger`, `description`, ...) are the step's own, as for any `Step`.

    `health` runs periodic probes (`probe`, default: the step's `health_check()`); `autoscale`
    grows and shrinks the pool (new processors from `factory`). Both run in the background from
    the first request until `aclose()`.

    `concurrency` is how many firings of this step one run may have at once (default 1024: the
    pool's own queue does the limiting).

        ParallelStep("summarize", [a, b, c], balancer="fastest_response", deadline=30,
                     failover=RetryPolicy(attempts=3), pool_concurrency=8, timeout=60)
    """

    def __init__(
        self,
        name: str = "parallel",
        processors: Iterable[Step | Processor] = (),
        *,
        pool: ProcessorPool | None = None,
        pool_concurrency: int | None = None,
        health: HealthPolicy | None = None,
        probe: Probe | None = None,
        autoscale: AutoscalePolicy | None = None,
        factory: Factory | None = None,
        batch: bool = False,
        concurrency: int = 1024,
        **options: Any,
    ) -> None:
        pool_options = {key: options.pop(key) for key in list(options) if key in POOL_OPTIONS}
        if pool is None:
            pool = ProcessorPool(processors, name=name, concurrency=pool_concurrency, **pool_options)
        elif list(processors) or pool_options or pool_concurrency is not None:
            raise ValueError(f"step {name!r}: give either a pool, or processors and pool options, not both")
        members = [p.step for p in pool.processors]
        if not members and ("inputs" not in options or "outputs" not in options):
            raise ValueError(f"step {name!r} needs at least one processor (or declared inputs and outputs)")
        request_inputs = options.pop("inputs", None) or dict(members[0].inputs)
        request_outputs = options.pop("outputs", None) or dict(members[0].outputs)
        if batch:
            super().__init__(
                name, inputs={"requests": list}, outputs={"results": list}, concurrency=concurrency, **options
            )
        else:
            super().__init__(name, inputs=request_inputs, outputs=request_outputs, concurrency=concurrency, **options)
        self.request_inputs = list(request_inputs)
        self.request_outputs = list(request_outputs)
        _check_compatible(name, members, self.request_inputs, self.request_outputs)
        self.pool = pool
        self.batch = batch
        self.health_checker = HealthChecker(pool, health, probe=probe) if health is not None else None
        self.autoscaler = Autoscaler(pool, factory, autoscale) if autoscale is not None else None
        self._background_loop: asyncio.AbstractEventLoop | None = None

    # -- requests ------------------------------------------------------------------------------
    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any] | None:
        if self.batch:
            return {"results": await self.map(inputs["requests"])}
        outputs: Mapping[str, Any] | None = await self.submit(inputs)
        return outputs

    async def submit(self, inputs: Mapping[str, Any], **options: Unpack[RequestOptions]) -> Any:
        """One request; returns the processor's outputs. The options (`priority`, `deadline`,
        `session`) are those of `ProcessorPool.call`; sticky pools take the session from the
        `session` input when none is given."""
        self.start()
        if options.get("session") is None and self.pool.sticky:
            value = inputs.get("session")
            options["session"] = None if value is None else str(value)
        return await self.pool.call(inputs, **options)

    async def map(self, items: Sequence[Any], *, priority: int = 0, deadline: float | None = None) -> list[Any]:
        """Many requests at once; results in the order of `items`. An item is a mapping of inputs,
        or a bare value when the processors need one input. A result is the processors' only
        output, or the mapping of outputs. If one request fails, the others are cancelled."""
        requests = [self._as_inputs(item) for item in items]
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self.submit(r, priority=priority, deadline=deadline)) for r in requests]
        except BaseExceptionGroup as failed:
            # Report the request's own error (as for a single request), not a group of them.
            first = failed.exceptions[0]
            if len(failed.exceptions) > 1:
                first.add_note(f"{len(failed.exceptions)} of {len(requests)} requests of {self.name!r} failed")
            raise first from None
        return [self._as_result(task.result()) for task in tasks]

    def _as_inputs(self, item: Any) -> Mapping[str, Any]:
        if isinstance(item, Mapping):
            return item
        required = [n for n in self.request_inputs if n in _required(self.pool)] or self.request_inputs
        if len(required) != 1:
            raise TypeError(
                f"step {self.name!r}: a request must be a mapping of {', '.join(self.request_inputs)} "
                f"(got {type(item).__name__})"
            )
        return {required[0]: item}

    def _as_result(self, outputs: Any) -> Any:
        if isinstance(outputs, Mapping) and len(self.request_outputs) == 1:
            return outputs.get(self.request_outputs[0])
        return dict(outputs) if isinstance(outputs, Mapping) else outputs

    # -- background work -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the health checks and autoscaling (done on the first request)."""
        if self.health_checker is None and self.autoscaler is None:
            return
        loop = asyncio.get_running_loop()
        if self._background_loop is loop:
            return
        self._background_loop = loop
        for worker in (self.health_checker, self.autoscaler):
            if worker is not None:
                worker.start()

    def readiness(self) -> dict[str, Any]:
        if self.health_checker is not None:
            return self.health_checker.readiness()
        return self.pool.readiness()

    async def aclose(self) -> None:
        """Stop the background work and close the pool."""
        for worker in (self.health_checker, self.autoscaler):
            if worker is not None:
                await worker.stop()
        self._background_loop = None
        await self.pool.aclose()


def _required(pool: ProcessorPool) -> set[str]:
    return {name for p in pool.processors for name in p.step.required_inputs}


def _check_compatible(name: str, members: list[Step], inputs: list[str], outputs: list[str]) -> None:
    for member in members:
        missing = [n for n in member.required_inputs if n not in inputs]
        if missing:
            raise ValueError(
                f"step {name!r}: processor {member.name!r} needs input(s) {', '.join(missing)} "
                f"that the step does not have (inputs: {', '.join(inputs)})"
            )
        if set(member.outputs) != set(outputs):
            raise ValueError(
                f"step {name!r}: processor {member.name!r} has outputs {', '.join(member.outputs) or 'none'}, "
                f"the others {', '.join(outputs) or 'none'}: processors must be interchangeable"
            )


class ParallelAgentStep(ParallelStep):
    """A `ParallelStep` over agents (for independent requests: each agent keeps its own memory)."""

    def __init__(self, name: str = "agents", agents: Iterable[Agent | Processor] = (), **options: Any) -> None:
        agents = list(agents)
        for agent in agents:
            step = agent.step if isinstance(agent, Processor) else agent
            if not isinstance(step, Agent):
                raise TypeError(f"step {name!r}: {step!r} is not an Agent")
        super().__init__(name, agents, **options)


class ParallelConversationalAgentStep(ParallelAgentStep):
    """Agents serving conversations: a session stays on one agent while it is healthy (sticky
    routing), and moves to another when not. The agents share one conversation memory (unless
    `memory=False`), so that a session that moves keeps its history."""

    def __init__(
        self,
        name: str = "conversation",
        agents: Iterable[Agent | Processor] = (),
        *,
        memory: ConversationMemory | bool = True,
        factory: Factory | None = None,
        **options: Any,
    ) -> None:
        agents = list(agents)
        self.memory: ConversationMemory | None = None
        if memory is not False:
            self.memory = memory if isinstance(memory, ConversationMemory) else ConversationMemory()
            for agent in agents:
                step = agent.step if isinstance(agent, Processor) else agent
                if isinstance(step, Agent):
                    step.memory = self.memory
        if factory is not None and self.memory is not None:
            factory = _sharing_memory(factory, self.memory)
        options["sticky"] = True
        super().__init__(name, agents, factory=factory, **options)


def _sharing_memory(factory: Factory, memory: ConversationMemory) -> Factory:
    async def make(n: int) -> Step | Processor:
        made = factory(n)
        if inspect.isawaitable(made):
            made = await made
        assert isinstance(made, Step | Processor)
        step = made.step if isinstance(made, Processor) else made
        if isinstance(step, Agent):
            step.memory = memory
        return made

    return make
