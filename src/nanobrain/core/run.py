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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .clock import Clock
from .context import StepContext, _current
from .data_units import MISSING, DataUnit
from .errors import CycleLimitExceeded, LinkFailed, RunError, StepFailed, StepTimeout
from .events import (
    EventSink,
    OutputSet,
    RunFailed,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
)
from .events import StepFailed as StepFailedEvent
from .links import Link
from .steps import Step
from .triggers import Interval, Snapshot, TriggerState

if TYPE_CHECKING:
    from .plan import Plan, Route, StepPlan

Invoke = Callable[[dict[str, Any]], Any]


def new_run_id() -> str:
    return os.urandom(8).hex()


class StepRuntime:
    """One step's state inside one run."""

    __slots__ = (
        "blocked",
        "capacity",
        "concurrency",
        "context",
        "fired",
        "name",
        "outputs",
        "pending",
        "plan",
        "running",
        "step",
        "trigger",
        "units",
    )

    def __init__(self, plan: StepPlan, run: Run) -> None:
        step = plan.step
        self.plan = plan
        self.step = step
        self.name = step.name
        # Templates were named and prepared once in the plan; cloning them is cheap.
        self.units: dict[str, DataUnit] = {port: t.clone() for port, t in plan.inputs.items()}
        self.outputs: dict[str, DataUnit] = {port: t.clone() for port, t in plan.outputs.items()}
        self.trigger: TriggerState = step.trigger.arm(self.units, plan.required, plan.connected)
        self.pending: deque[Snapshot] = deque()
        self.blocked: deque[tuple[Snapshot, asyncio.Future[None]]] = deque()
        self.running = 0
        self.concurrency = step.concurrency
        self.capacity = plan.capacity
        self.context = StepContext(
            run.run_id, step.name, f"{run.path}/{step.name}", run.sink, run.usage, run.loop, run.thread, run.clock
        )
        self.fired = 0


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
        usage: dict[str, int] | None = None,
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
        self.path = path or plan.name
        self.sink = sink
        self.clock = clock
        self.inputs = {name: unit.clone() for name, unit in plan.workflow_inputs.items()}
        self.outputs = {name: unit.clone() for name, unit in plan.workflow_outputs.items()}
        self.steps = [StepRuntime(sp, self) for sp in plan.steps]
        self.link_counts = [0] * plan.bounded_links
        self.started = 0.0
        self._ready: deque[tuple[StepRuntime, Snapshot]] = deque()
        self._active = 0
        self._timers = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._error: BaseException | None = None
        self._idle: asyncio.Future[None] | None = None
        self._driver: asyncio.Task[Any] | None = None
        self._driver_failed = False

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
                    "outputs": {p: u._value for p, u in sr.outputs.items() if u._value is not MISSING},
                    "fired": sr.fired,
                    "running": sr.running,
                    # Firings waiting for the step (their input snapshots), oldest first.
                    "pending": [dict(snapshot) for snapshot in sr.pending],
                    # Values a join holds for inputs that ran ahead of the others.
                    "waiting": {p: list(q) for p, q in getattr(sr.trigger, "waiting", {}).items() if q},
                }
                for sr in self.steps
            },
            "link_counts": list(self.link_counts),
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
    async def execute(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Set the inputs, run until no work is left, return the outputs."""
        sink = self.sink
        self.started = time.perf_counter()
        if sink is not None:
            sink(RunStarted(self.run_id, self.path, inputs=dict(values)))
        try:
            await self.send(values, drive=False)
            self.start_sources()
            self.start_timers(request_response=True)
            ready = self._ready
            if ready:
                sr, snap = ready.popleft()
                while ready:
                    self._spawn(*ready.popleft())
                self._active += 1
                self._driver = asyncio.current_task()
                try:
                    await self._worker(sr, snap)
                except asyncio.CancelledError:
                    if not self._driver_failed:
                        raise
                    # Cancelled by `_fail` because another worker failed: not the caller's cancel.
                    self._driver.uncancel()  # type: ignore[union-attr]
                finally:
                    self._driver = None
            await self.wait_idle()
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
            self._enqueue_now(self.steps[index], {})

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
                self._enqueue_now(sr, snap)
                self.drain_ready()
                return
        raise RunError(f"no step named {step_name!r} (steps: {', '.join(s.name for s in self.steps)})")

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
    def _spawn(self, sr: StepRuntime, snap: Snapshot) -> None:
        self._active += 1
        task = asyncio.get_running_loop().create_task(self._worker(sr, snap))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _enqueue_now(self, sr: StepRuntime, snap: Snapshot) -> None:
        if sr.running < sr.concurrency:
            sr.running += 1
            self._ready.append((sr, snap))
        else:
            sr.pending.append(snap)

    async def _worker(self, sr: StepRuntime, snap: Snapshot) -> None:
        ready = self._ready
        try:
            while True:
                await self._fire(sr, snap)
                sr.running -= 1
                if sr.pending:
                    self._admit_next(sr)
                if not ready:
                    break
                sr, snap = ready.popleft()
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
        sr.running += 1
        self._ready.append((sr, sr.pending.popleft()))
        # Room was made in the pending queue: admit the longest-waiting producer.
        while sr.blocked and (sr.capacity is None or len(sr.pending) < sr.capacity):
            snap, waiter = sr.blocked.popleft()
            if not waiter.done():
                sr.pending.append(snap)
                waiter.set_result(None)

    async def _timer(self, sr: StepRuntime, trigger: Interval) -> None:
        clock = self.clock
        sleep = clock.sleep if clock is not None else asyncio.sleep
        try:
            fired = 0
            if not trigger.immediately:
                await sleep(trigger.seconds)
            while True:
                snap = sr.trigger.snapshot()
                if snap is not None:
                    fired += 1
                    self._enqueue_now(sr, snap)
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
    async def _fire(self, sr: StepRuntime, snap: Snapshot) -> None:
        sink = self.sink
        sr.fired += 1
        token = _current.set(sr.context)
        try:
            if sink is not None:
                sink(StepStarted(self.run_id, self.path, step=sr.name, inputs=snap))
                started = time.perf_counter()
            try:
                result = await sr.plan.invoke(snap)
                if result:
                    await self._route_outputs(sr, result)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if sink is not None:
                    sink(StepFailedEvent(self.run_id, self.path, step=sr.name, error=exc))
                raise StepFailed(sr.name, exc) from exc
            if sink is not None:
                sink(
                    StepFinished(
                        self.run_id,
                        self.path,
                        step=sr.name,
                        outputs=dict(result) if result else {},
                        duration=time.perf_counter() - started,
                    )
                )
        finally:
            _current.reset(token)

    async def _route_outputs(self, sr: StepRuntime, result: Mapping[str, Any]) -> None:
        outputs = sr.outputs
        routes = sr.plan.routes
        for name, value in result.items():
            unit = outputs.get(name)
            if unit is None:
                known = ", ".join(outputs) or "none"
                raise RunError(f"step {sr.name!r} returned an unknown output {name!r} (its outputs: {known})")
            if unit.awaits_set:
                await unit.set(value)
            else:
                unit.set_nowait(value)
            targets = routes.get(name)
            if targets:
                await self._deliver(targets, unit._value)

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
            if sr.running < sr.concurrency:
                sr.running += 1
                self._ready.append((sr, snap))
            elif sr.capacity is None or len(sr.pending) < sr.capacity:
                sr.pending.append(snap)
            else:
                await self._wait_for_room(sr, snap)

    async def _wait_for_room(self, sr: StepRuntime, snap: Snapshot) -> None:
        # Steps made ready by this worker must not wait for it while it waits for them.
        self.drain_ready()
        waiter = asyncio.get_running_loop().create_future()
        sr.blocked.append((snap, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            for i, (_, w) in enumerate(sr.blocked):
                if w is waiter:
                    del sr.blocked[i]
                    break
            raise

    def _set_output(self, name: str, value: Any) -> None:
        unit = self.outputs[name]
        unit.set_nowait(value)
        if self.sink is not None:
            self.sink(OutputSet(self.run_id, self.path, name=name, value=unit._value))

    async def _set_output_awaited(self, name: str, value: Any) -> None:
        unit = self.outputs[name]
        await unit.set(value)
        if self.sink is not None:
            self.sink(OutputSet(self.run_id, self.path, name=name, value=unit._value))


def _report_retry(attempt: int, error: BaseException) -> None:
    """A failed attempt that will be retried becomes a `step_failed` event with its attempt number."""
    context = _current.get()
    if context is not None and context.sink is not None:
        context.sink(StepFailedEvent(context.run_id, context.run_path, step=context.step, error=error, attempt=attempt))


def wrap_invoke(step: Step, clock: Clock | None) -> Invoke:
    """The step's `process`, wrapped in its retry policy and timeout (outermost: retry)."""
    invoke: Invoke = step.process
    timeout = step.timeout
    if timeout is not None:
        inner_timeout = invoke

        async def with_timeout(inputs: dict[str, Any]) -> Any:
            async with asyncio.timeout(timeout) as scope:
                try:
                    result = await inner_timeout(inputs)
                except asyncio.CancelledError:
                    if scope.expired():
                        raise StepTimeout(step.name, timeout, cancelled=step.cancellable) from None
                    raise
            if scope.expired():
                # The step caught the cancel and returned after its deadline: still a timeout.
                raise StepTimeout(step.name, timeout, cancelled=step.cancellable)
            return result

        invoke = with_timeout
    policy = step.retry
    if policy is not None:
        inner_retry = invoke

        async def with_retry(inputs: dict[str, Any]) -> Any:
            # The run's clock when there is one (a nested workflow runs on its parent's clock).
            context = _current.get()
            run_clock = context.clock if context is not None and context.clock is not None else clock
            sleep = run_clock.sleep if run_clock is not None else None
            return await policy.call(lambda: inner_retry(inputs), sleep=sleep, on_retry=_report_retry)

        invoke = with_retry
    return invoke
