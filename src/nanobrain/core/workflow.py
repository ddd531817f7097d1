"""Workflows: graphs of steps and links with declared inputs and outputs. A workflow is a step."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from .clock import Clock
from .context import current_context
from .data_units import MISSING, DataUnit
from .errors import RunError, WorkflowValidationError
from .events import EventSink, RunEvent
from .executors import DEFAULT_EXECUTOR, Executor
from .journal import JournalStore, RunJournal
from .links import ConditionalLink, Link, QueueLink, TransformLink
from .plan import Plan, compile_plan
from .run import Run, new_run_id
from .sinks import EventBuffer, fan_out
from .steps import FunctionStep, Step, UnitSpec
from .validation import find_problems

Endpoint = str | Step


class Workflow(Step):
    """A graph of steps and links. Build it in Python or load it from YAML; run it or nest it.

    Inputs and outputs are declared like a step's (name -> type). Links name their endpoints
    `step.unit`; the workflow's own inputs and outputs are `inputs.NAME` and `outputs.NAME`.
    """

    def __init__(
        self,
        name: str = "workflow",
        *,
        inputs: Mapping[str, UnitSpec] | Sequence[str] | None = None,
        outputs: Mapping[str, UnitSpec] | Sequence[str] | None = None,
        steps: Sequence[Step] = (),
        links: Sequence[Link] = (),
        clock: Clock | None = None,
        durable: bool | JournalStore | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name, inputs=inputs or {}, outputs=outputs or {}, **options)
        #: Journal every run (True: the default store under NANOBRAIN_HOME; or a JournalStore).
        self.durable = durable
        #: Where the workflow was loaded from (a file path), recorded with durable runs.
        self.source = ""
        self.steps: dict[str, Step] = {}
        self.links: list[Link] = []
        self.clock = clock
        #: Executors and stores this workflow owns, created by the config loader; `aclose` closes them.
        self.executors: list[Executor] = []
        self.stores: list[Any] = []
        self._plan: Plan | None = None
        for s in steps:
            self.add(s)
        for link in links:
            self.add_link(link)

    # -- building ---------------------------------------------------------------------------
    def add(self, step: Step | Callable[..., Any], *, name: str | None = None) -> Step:
        """Add a step (a function becomes a FunctionStep). Returns the step as added."""
        if not isinstance(step, Step):
            step = FunctionStep(step)
        if name is not None and name != step.name:
            step = step.renamed(name)
        if step.name in self.steps and self.steps[step.name] is not step:
            raise ValueError(f"workflow {self.name!r} already has a step named {step.name!r}")
        self.steps[step.name] = step
        self._plan = None
        return step

    def add_link(self, link: Link) -> Link:
        self.links.append(link)
        self._plan = None
        return link

    def link(
        self,
        source: Endpoint,
        target: Endpoint,
        *,
        transform: Callable[[Any], Any] | None = None,
        when: Callable[[Any], bool] | None = None,
        maxsize: int | None = None,
        max_iterations: int | None = None,
        fan_in: str | None = None,
    ) -> Link:
        """Link `source` (`step.output`, `inputs.x`, or a step with one output) to `target`.

        `transform` changes the value on the way, `when` routes only matching values, `maxsize`
        makes a bounded queue, `max_iterations` bounds a link that closes a cycle, `fan_in`
        ("merge", "collect", "collect_dict") says how links into one input combine.
        """
        src = self._endpoint(source, "source")
        dst = self._endpoint(target, "target")
        link: Link
        if when is not None:
            if maxsize is not None:
                raise ValueError("a link is either conditional (when=) or a queue (maxsize=), not both")
            link = ConditionalLink(src, dst, when, transform=transform, max_iterations=max_iterations, fan_in=fan_in)
        elif transform is not None:
            if maxsize is not None:
                raise ValueError("a link is either a transform or a queue (maxsize=), not both")
            link = TransformLink(src, dst, transform, max_iterations=max_iterations, fan_in=fan_in)
        elif maxsize is not None:
            link = QueueLink(src, dst, maxsize=maxsize, max_iterations=max_iterations, fan_in=fan_in)
        else:
            link = Link(src, dst, max_iterations=max_iterations, fan_in=fan_in)
        return self.add_link(link)

    def collect(self, target: Endpoint, *sources: Endpoint, as_dict: bool = False) -> list[Link]:
        """Link every source into `target`, which receives one list (in the order given) with a
        value from each once all have delivered; `as_dict` gives a dict keyed by source step.

            wf.collect("total.values", "a.result", "b.result", "c.result")
        """
        if not sources:
            raise ValueError(f"workflow {self.name!r}: collect into {target!r} needs at least one source")
        mode = "collect_dict" if as_dict else "collect"
        return [self.link(source, target, fan_in=mode) for source in sources]

    def _endpoint(self, endpoint: Endpoint, side: str) -> str:
        if isinstance(endpoint, str):
            return endpoint
        if endpoint.name not in self.steps:
            self.add(endpoint)
        units = endpoint.outputs if side == "source" else endpoint.inputs
        if side == "target":
            units = {n: u for n, u in units.items() if u.default is MISSING} or units
        if len(units) != 1:
            raise ValueError(
                f"step {endpoint.name!r} has {len(units)} {'outputs' if side == 'source' else 'inputs'} "
                f"({', '.join(units) or 'none'}): name one as '{endpoint.name}.<unit>'"
            )
        return f"{endpoint.name}.{next(iter(units))}"

    def chain(self, *steps: Step | Callable[..., Any]) -> Workflow:
        """Add the steps and link each one's output to the next one's input.

        When a step has several outputs or inputs, units with the same name are linked.
        """
        self._chain(steps)
        return self

    def _chain(self, steps: Sequence[Step | Callable[..., Any]]) -> list[Step]:
        added: list[Step] = []
        used: set[str] = set()
        for s in steps:
            made = s if isinstance(s, Step) else FunctionStep(s)
            if made.name in used:
                # The same step again in this chain: each use is a step of its own, under its
                # own name (`add`, `add_2`, `add_3`, ...), not a link from the step to itself.
                made = self.add(made.renamed(self._free_name(made.name)))
            elif made is not s or made.name not in self.steps:
                made = self.add(made)
            used.add(made.name)
            added.append(made)
        for previous, following in itertools.pairwise(added):
            for source, target in _match_units(previous, following):
                self.link(f"{previous.name}.{source}", f"{following.name}.{target}")
        return added

    def _free_name(self, base: str) -> str:
        number = 2
        while f"{base}_{number}" in self.steps:
            number += 1
        return f"{base}_{number}"

    @classmethod
    def sequence(cls, *steps: Step | Callable[..., Any], name: str = "workflow", **options: Any) -> Workflow:
        """A linear workflow whose inputs are the first step's and outputs the last step's."""
        made = [s if isinstance(s, Step) else FunctionStep(s) for s in steps]
        if not made:
            raise ValueError("a sequence needs at least one step")
        workflow = cls(name, inputs=dict(made[0].inputs), outputs=dict(made[-1].outputs), **options)
        added = workflow._chain(made)
        first, last = added[0], added[-1]
        for port in first.inputs:
            workflow.link(f"inputs.{port}", f"{first.name}.{port}")
        for port in last.outputs:
            workflow.link(f"{last.name}.{port}", f"outputs.{port}")
        return workflow

    # -- checking -------------------------------------------------------------------------
    def problems(self) -> list[Any]:
        """Every problem of the graph (empty when it is valid)."""
        return find_problems(self.steps, self.links, self.inputs, self.outputs)

    def validate(self) -> Workflow:
        """Raise WorkflowValidationError listing every problem; return self when valid."""
        problems = self.problems()
        if problems:
            raise WorkflowValidationError(problems, subject=f"workflow {self.name!r}")
        return self

    def plan(self) -> Plan:
        """The compiled form (validated once, cached until the workflow changes)."""
        if self._plan is None:
            self.validate()
            for step in self.steps.values():
                if isinstance(step, Workflow):
                    step.plan()
            self._plan = compile_plan(self.name, self.steps, self.links, self.clock, self.inputs, self.outputs)
        return self._plan

    # -- running ---------------------------------------------------------------------------
    async def _complete_inputs(self, inputs: Mapping[str, Any], *, allow_missing: bool = False) -> dict[str, Any]:
        """The given inputs plus the value of every input not given (its stored value or default)."""
        unknown = [name for name in inputs if name not in self.inputs]
        if unknown:
            raise RunError(
                f"workflow {self.name!r} has no input {', '.join(map(repr, unknown))} "
                f"(inputs: {', '.join(self.inputs) or 'none'})"
            )
        values: dict[str, Any] = {}
        for name, unit in self.inputs.items():
            if name in inputs:
                values[name] = inputs[name]
                continue
            # A unit that keeps its value elsewhere (persistent) starts from what it stored,
            # so a run that does not send it never overwrites it with the default.
            value = await unit.initial_value()
            if value is not MISSING:
                values[name] = value
        missing = [name for name in self.inputs if name not in values]
        if missing and not allow_missing:
            raise RunError(f"workflow {self.name!r} needs input {', '.join(map(repr, missing))}")
        return values

    def new_run(
        self,
        *,
        run_id: str | None = None,
        sinks: Sequence[EventSink] = (),
        on_event: EventSink | None = None,
        path: str = "",
        usage: dict[str, int] | None = None,
        clock: Clock | None = None,
    ) -> Run:
        """A fresh run with its own state (for callers that drive it themselves).

        Events go to `on_event`, each of `sinks` and the process-wide instruments; a sink that
        raises is logged and disabled for this run. `clock` replaces the workflow's own.
        """
        run_id = run_id or new_run_id()
        return self._make_run(fan_out((on_event, *sinks), run_id), run_id=run_id, path=path, usage=usage, clock=clock)

    def _make_run(
        self,
        sink: EventSink | None,
        *,
        run_id: str,
        path: str = "",
        usage: dict[str, int] | None = None,
        clock: Clock | None = None,
        parent_run_id: str | None = None,
        journal: RunJournal | None = None,
    ) -> Run:
        return Run(
            self.plan(),
            inputs=self.inputs,
            outputs=self.outputs,
            sink=sink,
            path=path or self.name,
            clock=clock or self.clock,
            run_id=run_id,
            parent_run_id=parent_run_id,
            usage=usage,
            journal=journal,
        )

    async def invoke(
        self,
        inputs: Mapping[str, Any],
        *,
        on_event: EventSink | None = None,
        run_id: str | None = None,
        sinks: Sequence[EventSink] = (),
        durable: bool | JournalStore | None = None,
    ) -> dict[str, Any]:
        """Run once with `inputs`; return the outputs that were set. Events go to `on_event` and `sinks`.

        `durable` (True for the default store, or a JournalStore; default: the workflow's own
        setting) journals the run so that `resume` can continue it after a crash.
        """
        chosen = self.durable if durable is None else durable
        if chosen:
            from .durable import resolve_store, run_durable

            store = resolve_store(chosen)
            assert store is not None
            listeners = [s for s in (on_event, *sinks) if s is not None]
            return await run_durable(self, inputs, store=store, run_id=run_id, sinks=listeners, source=self.source)
        values = await self._complete_inputs(inputs)
        return await self.new_run(on_event=on_event, run_id=run_id, sinks=sinks).execute(values)

    async def run(
        self,
        inputs: Mapping[str, Any] | None = None,
        /,
        *,
        run_id: str | None = None,
        sinks: Sequence[EventSink] = (),
        durable: bool | JournalStore | None = None,
        **more_inputs: Any,
    ) -> dict[str, Any]:
        """Run once; return the outputs that were set, by name.

        Inputs come as keywords (`wf.run(text="hi")`) or as a mapping (`wf.run({"text": "hi"})`),
        the form to use for an input named like a keyword of this method (`run_id`, `sinks`).
        """
        values = self._merge_inputs(inputs, more_inputs, run_id=run_id, sinks=sinks, durable=durable)
        return await self.invoke(values, run_id=run_id, sinks=sinks, durable=durable)

    async def resume(
        self,
        run_id: str,
        *,
        durable: bool | JournalStore | None = None,
        sinks: Sequence[EventSink] = (),
        send: Mapping[str, Any] | None = None,
        fire: Sequence[str] = (),
        force: bool = False,
    ) -> dict[str, Any]:
        """Continue a durable run (after a crash, or when it waits for input: `send`, `fire`).

        Completed firings are not executed again; a firing that was in flight runs again
        (at-least-once: use `current_context().idempotency_key` for side effects).
        """
        from .durable import resolve_store, resume_durable

        chosen = durable if durable is not None else self.durable
        store = resolve_store(True if chosen is None or chosen is False else chosen)
        assert store is not None
        return await resume_durable(self, run_id, store=store, sinks=sinks, send=send, fire=fire, force=force)

    async def stream(
        self,
        inputs: Mapping[str, Any] | None = None,
        /,
        *,
        run_id: str | None = None,
        sinks: Sequence[EventSink] = (),
        durable: bool | JournalStore | None = None,
        **more_inputs: Any,
    ) -> AsyncIterator[RunEvent]:
        """Run once, yielding run events as they happen. A failed run raises after its events."""
        values = self._merge_inputs(inputs, more_inputs, run_id=run_id, sinks=sinks, durable=durable)
        buffer = EventBuffer()
        task = asyncio.ensure_future(self.invoke(values, on_event=buffer, run_id=run_id, sinks=sinks, durable=durable))
        task.add_done_callback(buffer.close)
        events = buffer.events
        try:
            # The buffer is read here directly, not through a second async generator: one
            # generator step per event is the whole cost of streaming it.
            while True:
                while events:
                    event = events.popleft()
                    if event is None:
                        break
                    yield event
                else:
                    if not task.done():
                        await buffer.arrival()
                        continue
                    # Every event was sent before the run ended: no need to wait for the close.
                break
            await task
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _merge_inputs(self, inputs: Mapping[str, Any] | None, more: dict[str, Any], **keywords: Any) -> dict[str, Any]:
        # An input named like one of our keywords would silently become the keyword: refuse that.
        shadowed = [k for k, v in keywords.items() if k in self.inputs and v and (inputs is None or k not in inputs)]
        if shadowed:
            name = shadowed[0]
            raise RunError(
                f"workflow {self.name!r} has an input named {name!r}, which is also a keyword of run() and "
                f"stream(): pass inputs as a mapping, e.g. run({{{name!r}: ...}})"
            )
        if inputs is None:
            return more
        both = [name for name in more if name in inputs]
        if both:
            raise RunError(f"workflow {self.name!r}: input {', '.join(map(repr, both))} given twice")
        return {**inputs, **more}

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any] | None:
        """Run as a step of another workflow; events join the parent's stream.

        The nested run's id derives from the parent's firing (`parent.step.firing`), so it is the
        same when a durable parent re-runs that firing.
        """
        context = current_context()
        if context is None:
            run = self.new_run()
        else:
            run_id = f"{context.run_id}.{context.step}.{context.firing}"
            parent_journal = context.journal
            journal = None
            replay = None
            if parent_journal is not None:
                from .durable import nested_journal

                journal, replay = await nested_journal(parent_journal.store, run_id, self, context.run_id)
            run = self._make_run(
                context.sink,
                run_id=run_id,
                path=context.path,
                usage=context.usage,
                clock=self.clock or context.clock,
                parent_run_id=context.run_id,
                journal=journal,
            )
            if replay:
                return await run.execute(inputs, replay=replay)
        return await run.execute(await self._complete_inputs(inputs))

    async def aclose(self) -> None:
        """Release everything the workflow holds: each step's resources (model clients, pools),
        the executors its steps use, and what the loader opened for it; nested workflows too."""
        closed: set[int] = {id(DEFAULT_EXECUTOR)}
        for step_ in self.walk():
            if isinstance(step_, Workflow):
                owned = [*step_.executors, *step_.stores]
                step_.stores = []
            else:
                await step_.aclose()
                owned = [step_.executor]
            for resource in owned:
                if id(resource) not in closed:
                    closed.add(id(resource))
                    await resource.aclose()

    def walk(self) -> list[Step]:
        """This workflow and every step in it, nested workflows' steps included (depth first)."""
        found: list[Step] = []
        pending: list[Step] = [self]  # an explicit stack: nesting depth is not limited by recursion
        while pending:
            step_ = pending.pop()
            found.append(step_)
            if isinstance(step_, Workflow):
                pending.extend(reversed(step_.steps.values()))
        return found

    def start(
        self, *, on_event: EventSink | None = None, run_id: str | None = None, sinks: Sequence[EventSink] = ()
    ) -> WorkflowHandle:
        """A long-lived run: triggers stay armed until stopped. Use `async with wf.start() as h:`."""
        return WorkflowHandle(self, on_event, run_id=run_id, sinks=sinks)


class WorkflowHandle:
    """A long-lived run: send inputs, fire manual steps, watch outputs, stop."""

    def __init__(
        self,
        workflow: Workflow,
        on_event: EventSink | None = None,
        *,
        run_id: str | None = None,
        sinks: Sequence[EventSink] = (),
    ) -> None:
        self.workflow = workflow
        # `events()` iterators come and go while the run lives: they hang off one dispatching sink.
        self._listeners: list[EventSink] = []
        self.run = workflow.new_run(on_event=on_event, sinks=(*sinks, self._dispatch), run_id=run_id)
        self._started = False
        self._stopped = False
        self._stoppers: list[EventBuffer] = []

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def _dispatch(self, event: RunEvent) -> None:
        for listener in tuple(self._listeners):
            listener(event)

    async def __aenter__(self) -> WorkflowHandle:
        await self.begin()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def begin(self) -> None:
        if self._started:
            return
        self._started = True
        self.run.start_sources()
        self.run.start_timers(request_response=False)
        self.run.drain_ready()

    async def send(self, **inputs: Any) -> None:
        """Set workflow inputs; the steps they reach start working."""
        unknown = [n for n in inputs if n not in self.workflow.inputs]
        if unknown:
            raise RunError(f"workflow {self.workflow.name!r} has no input {', '.join(map(repr, unknown))}")
        await self.run.send(inputs)
        self._raise_error()

    def fire(self, step: str) -> None:
        """Fire a step now (for manual triggers)."""
        self.run.fire(step)

    async def idle(self) -> dict[str, Any]:
        """Wait until no step is working (timers aside) and return the outputs so far."""
        await self.run.wait_idle(timers=False)
        self._raise_error()
        return self.outputs

    @property
    def outputs(self) -> dict[str, Any]:
        return self.run.output_values()

    def events(self) -> AsyncIterator[RunEvent]:
        """Iterate over the events from now on; the iteration ends when the handle stops."""
        buffer = EventBuffer()
        self._listeners.append(buffer)
        self._stoppers.append(buffer)
        if self._stopped:
            buffer.close()

        async def iterate() -> AsyncIterator[RunEvent]:
            try:
                async for event in buffer:
                    yield event
            finally:
                if buffer in self._listeners:
                    self._listeners.remove(buffer)

        return iterate()

    def _raise_error(self) -> None:
        if self.run.error is not None:
            raise self.run.error

    async def stop(self) -> None:
        """Disarm triggers, cancel work in flight, and end every `events()` iteration."""
        await self.run.cancel()
        self._stopped = True
        for buffer in self._stoppers:
            buffer.close()
        self._stoppers.clear()


def _match_units(previous: Step, following: Step) -> list[tuple[str, str]]:
    outs, ins = previous.outputs, following.inputs
    required = [n for n, u in ins.items() if u.default is MISSING]
    if len(outs) == 1 and (len(required) == 1 or len(ins) == 1):
        return [(next(iter(outs)), required[0] if required else next(iter(ins)))]
    same = [n for n in outs if n in ins]
    if same:
        return [(n, n) for n in same]
    raise ValueError(
        f"cannot chain {previous.name!r} (outputs: {', '.join(outs) or 'none'}) to {following.name!r} "
        f"(inputs: {', '.join(ins) or 'none'}): link them explicitly with workflow.link()"
    )


__all__ = ["Workflow", "WorkflowHandle", "DataUnit"]
