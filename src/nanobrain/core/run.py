"""The engine: one `Run` object holds all state of one execution of a workflow.

A run owns its own copies of every data unit, the armed triggers, the per-step queues of
pending firings and the bounded-cycle counters, so concurrent runs of one workflow share no
mutable state.

Scheduling: a worker runs a step, routes its outputs, then continues with the next ready step
in the same task; only extra ready steps (fan-out) get tasks of their own. A linear chain thus
runs without creating a task per step.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .clock import Clock
from .context import StepContext, _current
from .data_units import _PLAIN_KINDS, MISSING, DataUnit
from .errors import CycleLimitExceeded, LinkFailed, RunError, StepError
from .events import (
    EventSink,
    OutputSet,
    RunFailed,
    RunFinished,
    RunStarted,
    StepFailed,
    StepFinished,
    StepStarted,
)
from .journal import DONE, FIRE, SEND, RunJournal
from .links import Link
from .parking_lot import ParkingLot
from .triggers import Interval, Snapshot, TriggerState

if TYPE_CHECKING:
    from .plan import Plan, Route, StepPlan


def new_run_id() -> str:
    return os.urandom(8).hex()


class StepRuntime:
    """One step's state inside one run."""

    __slots__ = (
        "blocked",
        "capacity",
        "concurrency",
        "fired",
        "name",
        "output_units",
        "outputs",
        "pending",
        "plan",
        "running",
        "step",
        "trigger",
        "units",
    )

    def __init__(self, plan: StepPlan) -> None:
        step = plan.step
        self.plan = plan
        self.step = step
        self.name = step.name
        # Templates were named and prepared once in the plan; cloning them is cheap.
        self.units: dict[str, DataUnit] = {port: t.clone() for port, t in plan.inputs.items()}
        #: The latest value of each output, once the step produced one. Plain outputs are checked
        #: against the plan's template and need no unit of their own in each run.
        self.outputs: dict[str, Any] | None = None
        #: Per-run units of outputs that do I/O when set (file, persistent), made when first set.
        self.output_units: dict[str, DataUnit] | None = None
        self.trigger: TriggerState = step.trigger.arm(self.units, plan.required, plan.connected)
        # Firings waiting for the step, and producers waiting for room: (firing number, snapshot).
        # Most steps of most runs never queue: the deques are made when first needed.
        self.pending: deque[tuple[int, Snapshot]] | None = None
        self.blocked: ParkingLot[tuple[int, Snapshot]] | None = None
        self.running = 0
        self.concurrency = step.concurrency
        self.capacity = plan.capacity
        self.fired = 0

    def queue(self) -> deque[tuple[int, Snapshot]]:
        """The pending-firing queue, made on first use."""
        pending = self.pending
        if pending is None:
            pending = self.pending = deque()
        return pending


class Run:
    """One execution of a workflow (request/response or long-lived)."""

    def __init__(
        self,
        plan: Plan,
        *,
        inputs: Mapping[str, DataUnit],
        outputs: Mapping[str, DataUnit],
        sink: EventSink | None = None,
        path: str = "",
        clock: Clock | None = None,
        run_id: str | None = None,
        parent_run_id: str | None = None,
        usage: dict[str, int] | None = None,
        journal: RunJournal | None = None,
    ) -> None:
        self.plan = plan
        #: This run's usage counters (nested runs included); `usage` is the parent's, added to
        #: when this run ends, so each RunFinished reports its own run's usage.
        self.usage: dict[str, int] = {}
        self._parent_usage = usage
        # Captured once for all step contexts (events from worker threads go through this loop).
        self.loop = asyncio._get_running_loop()
        self.thread = threading.get_ident()
        self.run_id = run_id or new_run_id()
        self.parent_run_id = parent_run_id
        #: Where a durable run journals its step boundaries (None: not durable, no cost).
        self.journal = journal
        self._replaying = False
        self._timer_fired: dict[str, int] = {}
        self.path = path or plan.name
        self.sink = sink
        self.clock = clock
        self.inputs = {name: unit.clone() for name, unit in plan.workflow_inputs.items()}
        self.outputs = {name: unit.clone() for name, unit in plan.workflow_outputs.items()}
        self.steps = [StepRuntime(sp) for sp in plan.steps]
        self.link_counts = [0] * plan.bounded_links
        self.started = 0.0
        self._ready: deque[tuple[StepRuntime, int, Snapshot]] = deque()
        self._active = 0
        self._timers = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unstarted: set[asyncio.Task[Any]] = set()
        self._error: BaseException | None = None
        self._idle: asyncio.Future[None] | None = None
        self._driver: asyncio.Task[Any] | None = None
        self._driver_failed = False
        #: Values held by collecting links, per (step index, input): allocated on first use.
        self._collecting: dict[tuple[int, str], list[Any]] | None = None

    # -- public surface ---------------------------------------------------------------
    def output_values(self) -> dict[str, Any]:
        return {name: unit._value for name, unit in self.outputs.items() if unit._value is not MISSING}

    def state(self) -> dict[str, Any]:
        """A serializable view of the run at a step boundary (unit values, queues, counters)."""
        return {
            "run_id": self.run_id,
            "inputs": {n: u._value for n, u in self.inputs.items() if u._value is not MISSING},
            "outputs": self.output_values(),
            "steps": {
                sr.name: {
                    "inputs": {p: u._value for p, u in sr.units.items() if u._value is not MISSING},
                    "outputs": dict(sr.outputs or {}),
                    "fired": sr.fired,
                    "running": sr.running,
                    # Firings waiting for the step (their input snapshots), oldest first.
                    "pending": [dict(snapshot) for _, snapshot in sr.pending or ()],
                    # Values a join holds for inputs that ran ahead of the others.
                    "waiting": sr.trigger.dump().get("waiting", {}),
                    # Values collecting links hold until every link into the input delivered.
                    "collecting": self._collecting_state(sr),
                }
                for sr in self.steps
            },
            "link_counts": list(self.link_counts),
        }

    def _collecting_state(self, sr: StepRuntime) -> dict[str, list[list[Any]]]:
        if not self._collecting:
            return {}
        index = sr.plan.index
        return {
            port: [list(q) for q in held[1]]
            for (target, port), held in self._collecting.items()
            if target == index and any(held[1])
        }

    @property
    def active(self) -> int:
        """How many workers are busy (timers not counted)."""
        return self._active

    @property
    def error(self) -> BaseException | None:
        """The first failure of this run, if any."""
        return self._error

    # -- request/response -------------------------------------------------------------
    async def execute(
        self, values: Mapping[str, Any], *, replay: Sequence[tuple[str, str, int, Any]] | None = None
    ) -> dict[str, Any]:
        """Set the inputs, run until no work is left, return the outputs.

        With `replay` (a durable run's journal entries), the run's state is rebuilt from them
        first and only the work not yet done runs.
        """
        sink = self.sink
        self.started = time.perf_counter()
        if sink is not None:
            sink(RunStarted(self.run_id, self.path, inputs=dict(values), parent_run_id=self.parent_run_id))
        try:
            if replay:
                await self.replay(replay)
            else:
                await self.send(values, drive=False)
                self.start_sources()
            self.start_timers(request_response=True)
            ready = self._ready
            self._driver = asyncio.current_task()
            try:
                try:
                    if ready:
                        sr, firing, snap = ready.popleft()
                        while ready:
                            self._spawn(*ready.popleft())
                        self._active += 1
                        await self._worker(sr, firing, snap)
                    await self.wait_idle()
                except asyncio.CancelledError:
                    if not self._driver_failed:
                        raise
                    # Cancelled by `_fail` because another worker failed: not the caller's cancel.
                    self._driver.uncancel()  # type: ignore[union-attr]
                    self._driver = None
                    await self.wait_idle()
            finally:
                self._driver = None
            if self._error is not None:
                raise self._error
        except BaseException as exc:
            await self.cancel()
            self._add_usage_to_parent()
            if sink is not None:
                sink(
                    RunFailed(
                        self.run_id,
                        self.path,
                        error=exc,
                        duration=time.perf_counter() - self.started,
                        usage=dict(self.usage),
                    )
                )
            raise
        self._add_usage_to_parent()
        outputs = self.output_values()
        if sink is not None:
            sink(
                RunFinished(
                    self.run_id,
                    self.path,
                    outputs=outputs,
                    duration=time.perf_counter() - self.started,
                    usage=dict(self.usage),
                )
            )
        return outputs

    def _add_usage_to_parent(self) -> None:
        parent = self._parent_usage
        if parent is not None:
            for name, count in self.usage.items():
                parent[name] = parent.get(name, 0) + count

    async def send(self, values: Mapping[str, Any], *, drive: bool = True) -> None:
        """Set workflow inputs and deliver them along their links."""
        journal = self.journal
        if journal is not None and not self._replaying:
            journal.add(SEND, data=values)
            await journal.flush()
        routes = self.plan.input_routes
        for name, value in values.items():
            unit = self.inputs[name]
            if unit.awaits_set:
                await unit.set(value)
            else:
                unit.set_nowait(value)
            targets = routes.get(name)
            if targets:
                await self._deliver(targets, unit._value)
        if drive:
            self.drain_ready()

    def start_sources(self) -> None:
        """Fire steps that have no inputs (they run once per run)."""
        for index in self.plan.sources:
            self._fire_from_outside(self.steps[index], {})

    def start_timers(self, *, request_response: bool) -> None:
        for index in self.plan.timers:
            sr = self.steps[index]
            trigger = sr.step.trigger
            assert isinstance(trigger, Interval)
            if request_response and trigger.count is None:
                raise RunError(
                    f"step {sr.name!r} has an interval trigger without a count: it would never finish "
                    "in a request/response run; give it a count or use start() for a long-lived run"
                )
            self._timers += 1
            task = asyncio.get_running_loop().create_task(self._timer(sr, trigger))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def fire(self, step_name: str) -> None:
        """Fire a step now with its current inputs (manual triggers)."""
        for sr in self.steps:
            if sr.name == step_name:
                snap = sr.trigger.snapshot()
                if snap is None:
                    missing = [p for p in sr.step.required_inputs if sr.units[p]._value is MISSING]
                    raise RunError(f"step {step_name!r} cannot fire: inputs {missing} have no value yet")
                self._fire_from_outside(sr, snap)
                if self.journal is not None and not self._replaying:
                    self._spawn_flush()
                self.drain_ready()
                return
        raise RunError(f"no step named {step_name!r} (steps: {', '.join(s.name for s in self.steps)})")

    def _fire_from_outside(self, sr: StepRuntime, snap: Snapshot) -> None:
        """A firing that no value caused (a source, a manual or timer firing): journaled as such."""
        if self.journal is not None and not self._replaying:
            self.journal.add(FIRE, sr.name)
        self._enqueue_now(sr, snap)

    def _spawn_flush(self) -> None:
        assert self.journal is not None
        task = asyncio.get_running_loop().create_task(self.journal.flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def replay(self, entries: Sequence[tuple[str, str, int, Any]]) -> None:
        """Rebuild the run's state from journal entries without running a completed firing.

        Inputs and outside firings are applied again; each completed firing is taken from the
        queue it was waiting in and its recorded outputs are routed as they were. What is left
        queued afterwards is the work that was in flight or not yet started.
        """
        by_name = {sr.name: sr for sr in self.steps}
        self._replaying = True
        try:
            for kind, step, firing, data in entries:
                if kind == SEND:
                    await self.send(data, drive=False)
                elif kind == FIRE:
                    sr = self._replayed_step(by_name, step)
                    snap = sr.trigger.snapshot() if sr.plan.inputs else {}
                    if snap is None:
                        raise RunError(f"run {self.run_id}: journal fires {step!r} before its inputs have values")
                    self._timer_fired[step] = self._timer_fired.get(step, 0) + 1
                    self._enqueue_now(sr, snap)
                elif kind == DONE:
                    sr = self._replayed_step(by_name, step)
                    self._take(sr, firing)
                    if data:
                        await self._route_outputs(sr, data)
        finally:
            self._replaying = False

    def _replayed_step(self, by_name: Mapping[str, StepRuntime], step: str) -> StepRuntime:
        sr = by_name.get(step)
        if sr is None:
            raise RunError(f"run {self.run_id}: the journal names step {step!r}, which the workflow does not have")
        return sr

    def _take(self, sr: StepRuntime, firing: int) -> None:
        """Remove a queued firing that the journal says completed, as a worker would have."""
        ready = self._ready
        for index, (queued, number, _) in enumerate(ready):
            if queued is sr and number == firing:
                del ready[index]
                sr.running -= 1
                if sr.pending:
                    self._admit_next(sr)
                return
        raise RunError(
            f"run {self.run_id}: the journal says firing {firing} of step {sr.name!r} completed, but replaying "
            "the journal never started it (the workflow behaves differently than when the run was journaled)"
        )

    def drain_ready(self) -> None:
        """Give every ready firing a worker task."""
        ready = self._ready
        while ready:
            self._spawn(*ready.popleft())

    async def wait_idle(self, *, timers: bool = True) -> None:
        """Wait until no worker (and, with `timers`, no timer) is busy, or the run failed."""
        while (self._active > 0 or (timers and self._timers > 0)) and (self._error is None or self._active > 0):
            if self._idle is None or self._idle.done():
                self._idle = asyncio.get_running_loop().create_future()
            try:
                await self._idle
            except asyncio.CancelledError:
                await self.cancel()
                raise

    async def cancel(self) -> None:
        """Cancel every worker and timer and wait for them to finish."""
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- scheduling -----------------------------------------------------------------------
    def _spawn(self, sr: StepRuntime, firing: int, snap: Snapshot) -> None:
        self._active += 1
        task = asyncio.get_running_loop().create_task(self._worker(sr, firing, snap))
        self._tasks.add(task)
        self._unstarted.add(task)
        task.add_done_callback(self._worker_done)

    def _worker_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task in self._unstarted:
            # Cancelled before it ran (another firing failed): its `finally` never ran either.
            self._unstarted.discard(task)
            self._active -= 1
            if self._active == 0:
                self._wake()

    def _enqueue_now(self, sr: StepRuntime, snap: Snapshot) -> None:
        # Firings are numbered when their snapshot is taken: the numbering then follows the
        # order of the data, not of task scheduling, and a replayed run numbers them the same.
        sr.fired += 1
        if sr.running < sr.concurrency:
            sr.running += 1
            self._ready.append((sr, sr.fired, snap))
        else:
            sr.queue().append((sr.fired, snap))

    async def _worker(self, sr: StepRuntime, firing: int, snap: Snapshot) -> None:
        ready = self._ready
        if self._unstarted:
            self._unstarted.discard(asyncio.current_task())
        try:
            while True:
                await self._fire(sr, firing, snap)
                sr.running -= 1
                if sr.pending:
                    self._admit_next(sr)
                if not ready:
                    break
                sr, firing, snap = ready.popleft()
                while ready:
                    self._spawn(*ready.popleft())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._active -= 1
            if self._active == 0:
                self._wake()

    def _wake(self) -> None:
        if self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def _admit_next(self, sr: StepRuntime) -> None:
        pending = sr.pending
        assert pending is not None
        sr.running += 1
        self._ready.append((sr, *pending.popleft()))
        # Room was made in the pending queue: admit the longest-waiting producer.
        blocked = sr.blocked
        while blocked and (sr.capacity is None or len(pending) < sr.capacity):
            pending.append(blocked.hand_over())

    async def _timer(self, sr: StepRuntime, trigger: Interval) -> None:
        clock = self.clock
        sleep = clock.sleep if clock is not None else asyncio.sleep
        try:
            # A resumed run continues the count its journal reached.
            fired = self._timer_fired.get(sr.name, 0)
            if trigger.count is not None and fired >= trigger.count:
                return
            if not trigger.immediately:
                await sleep(trigger.seconds)
            while True:
                snap = sr.trigger.snapshot()
                if snap is not None:
                    fired += 1
                    self._fire_from_outside(sr, snap)
                    if self.journal is not None:
                        await self.journal.flush()
                    self.drain_ready()
                    if trigger.count is not None and fired >= trigger.count:
                        return
                await sleep(trigger.seconds)
        finally:
            self._timers -= 1
            if self._timers == 0:
                self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self._error is not None:
            return
        self._error = exc
        self._wake()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        driver = self._driver
        if driver is not None and driver is not current:
            self._driver_failed = True
            driver.cancel()

    # -- one firing ----------------------------------------------------------------------
    async def _fire(self, sr: StepRuntime, firing: int, snap: Snapshot) -> None:
        sink = self.sink
        # One context per firing, made here: a run keeps none for steps that are not running.
        context = StepContext(
            self.run_id,
            sr.name,
            f"{self.path}/{sr.name}",
            sink,
            self.usage,
            self.loop,
            self.thread,
            self.clock,
            firing,
            self.journal,
        )
        token = _current.set(context)
        try:
            if sink is not None:
                # Positional arguments (step, firing, inputs): events are built on every firing.
                sink(StepStarted(self.run_id, self.path, sr.name, firing, snap))
                started = time.perf_counter()
            try:
                result = await sr.plan.invoke(snap)
                journal = self.journal
                if journal is not None:
                    # Durable before the outputs move on: nothing downstream runs on a value
                    # that a crash could take back.
                    journal.add(DONE, sr.name, firing, dict(result) if result else {})
                    await journal.flush()
                if result:
                    await self._route_outputs(sr, result)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if sink is not None:
                    sink(StepFailed(self.run_id, self.path, step=sr.name, error=exc, firing=firing))
                raise StepError(sr.name, exc) from exc
            if sink is not None:
                sink(
                    StepFinished(
                        self.run_id,
                        self.path,
                        sr.name,
                        firing,
                        dict(result) if result else {},
                        time.perf_counter() - started,
                    )
                )
        finally:
            _current.reset(token)

    async def _route_outputs(self, sr: StepRuntime, result: Mapping[str, Any]) -> None:
        templates = sr.plan.outputs
        routes = sr.plan.routes
        values = sr.outputs
        if values is None:
            values = sr.outputs = {}
        for name, value in result.items():
            template = templates.get(name)
            if template is None:
                known = ", ".join(templates) or "none"
                raise RunError(f"step {sr.name!r} returned an unknown output {name!r} (its outputs: {known})")
            if type(template) in _PLAIN_KINDS:
                value = template._check(value)  # validates; the template itself is never written
            else:
                value = await self._set_output_unit(sr, template, value)
            values[name] = value
            targets = routes.get(name)
            if targets:
                await self._deliver(targets, value)

    async def _set_output_unit(self, sr: StepRuntime, template: DataUnit, value: Any) -> Any:
        units = sr.output_units
        if units is None:
            units = sr.output_units = {}
        unit = units.get(template.name)
        if unit is None:
            unit = units[template.name] = template.clone()
        if unit.awaits_set:
            await unit.set(value)
        else:
            unit.set_nowait(value)
        return unit._value

    async def _deliver(self, routes: tuple[Route, ...], value: Any) -> None:
        steps = self.steps
        for route in routes:
            if route.plain:
                carried = value
            else:
                try:
                    carried = route.link.carry(value)
                except Exception as exc:  # name the link, not just the step that produced the value
                    raise LinkFailed(route.link.name, exc) from exc
            if carried is Link.SKIP:
                continue
            if route.bound >= 0:
                count = self.link_counts[route.bound] + 1
                limit = route.link.max_iterations
                assert limit is not None
                if count > limit:
                    raise CycleLimitExceeded(route.link.name, limit)
                self.link_counts[route.bound] = count
            if route.collect is not None:
                carried = self._collect(route, carried)
                if carried is MISSING:
                    continue
            target = route.target
            if target < 0:
                if route.file_unit:
                    await self._set_output_awaited(route.port, carried)
                else:
                    self._set_output(route.port, carried)
                continue
            sr = steps[target]
            unit = sr.units[route.port]
            if route.file_unit:
                await unit.set(carried)
            else:
                unit.set_nowait(carried)
            snap = sr.trigger.offer(route.port, unit._value)
            if snap is None:
                continue
            sr.fired += 1
            if sr.running < sr.concurrency:
                sr.running += 1
                self._ready.append((sr, sr.fired, snap))
            elif sr.capacity is None or len(sr.pending or ()) < sr.capacity or self._replaying:
                sr.queue().append((sr.fired, snap))
            else:
                await self._wait_for_room(sr, sr.fired, snap)

    def _collect(self, route: Route, value: Any) -> Any:
        """Hold a collecting link's value until every link into the input has one; then the list
        (or dict) of the oldest value of each, else MISSING. A link that runs ahead is queued."""
        collect = route.collect
        assert collect is not None
        if self._collecting is None:
            self._collecting = {}
        key = (route.target, route.port)
        held = self._collecting.get(key)
        if held is None:
            held = self._collecting[key] = [collect.size, [deque() for _ in range(collect.size)]]
        queues: list[deque[Any]] = held[1]
        queue = queues[collect.slot]
        if not queue:
            held[0] -= 1
        queue.append(value)
        if held[0]:
            return MISSING
        values = []
        for q in queues:
            values.append(q.popleft())
            if not q:
                held[0] += 1
        if collect.keys is not None:
            return dict(zip(collect.keys, values, strict=True))
        return values

    async def _wait_for_room(self, sr: StepRuntime, firing: int, snap: Snapshot) -> None:
        # Steps made ready by this worker must not wait for it while it waits for them.
        self.drain_ready()
        if sr.blocked is None:
            sr.blocked = ParkingLot()
        await sr.blocked.park((firing, snap))

    def _set_output(self, name: str, value: Any) -> None:
        unit = self.outputs[name]
        unit.set_nowait(value)
        if self.sink is not None:
            self.sink(OutputSet(self.run_id, self.path, name, unit._value))

    async def _set_output_awaited(self, name: str, value: Any) -> None:
        unit = self.outputs[name]
        await unit.set(value)
        if self.sink is not None:
            self.sink(OutputSet(self.run_id, self.path, name, unit._value))
