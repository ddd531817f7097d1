"""Map: run one step once per item of a list known only at run time, results in input order.

`Map(step, over="x")` looks like `step` to the workflow, except that input `over` takes a list
and every output becomes a list with one entry per item. The other inputs go unchanged to every
item. The inner step may be a function, any `Step`, a nested workflow, an agent or a parallel
step; it runs on its own executor, with its own timeout and retry per item.
"""

from __future__ import annotations

import asyncio
import functools
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from .context import StepContext, _current, current_context
from .data_units import DataUnit
from .errors import ItemFailed
from .events import StepFailed, StepFinished, StepStarted
from .executors import Executor
from .step_policies import Invoke, wrap_invoke
from .steps import FunctionStep, Step

OnError = Literal["fail", "collect"]


def _list_of(tp: Any, *, optional: bool) -> Any:
    """`list[tp]` (`list[tp | None]` when failed items leave a hole), or plain `list` if `tp` is unknown."""
    if tp is None:
        return list
    try:
        return list[typing.Optional[tp]] if optional else list[tp]  # noqa: UP045 - tp may be a typing form
    except TypeError:
        return list


class Map(Step):
    """Run `step` once per item of input `over` (a list), at most `max_concurrency` at a time.

    Outputs are lists in input order. `on_error="fail"` (default) stops at the first failing
    item, cancels the others and fails the step with `ItemFailed`; `on_error="collect"` keeps
    going, leaves None where an item failed and adds an output `errors`: one `ItemFailed` per
    failed item, in input order. Each item reports `step_started`/`step_finished` events as
    step `NAME[index]` with the map's firing number. In a durable run each finished item is
    journaled, so a resumed firing does not run finished items again.

        total = Workflow.sequence(Map(square, max_concurrency=10), add_up)
    """

    def __init__(
        self,
        step: Step | Callable[..., Any],
        *,
        over: str | None = None,
        name: str | None = None,
        max_concurrency: int | None = None,
        on_error: OnError = "fail",
        executor: Executor | None = None,
        **options: Any,
    ) -> None:
        inner = step if isinstance(step, Step) else FunctionStep(step, executor=executor)
        if executor is not None and isinstance(step, Step):
            if not isinstance(inner, FunctionStep):
                raise ValueError(
                    f"map {inner.name!r}: give the executor to the step that is mapped ({type(inner).__name__}), "
                    "not to the map"
                )
            inner = inner.renamed(inner.name)
            inner.executor = executor
        label = name or inner.name
        if on_error not in ("fail", "collect"):
            raise ValueError(f"map {label!r}: on_error must be 'fail' or 'collect', got {on_error!r}")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"map {label!r}: max_concurrency must be at least 1, got {max_concurrency}")
        if over is None:
            required = inner.required_inputs
            candidates = required if required else tuple(inner.inputs)
            if len(candidates) != 1:
                raise ValueError(
                    f"map {label!r}: step {inner.name!r} has inputs {', '.join(inner.inputs) or 'none'}; "
                    "say which one takes the items with over='NAME'"
                )
            over = candidates[0]
        if over not in inner.inputs:
            raise ValueError(
                f"map {label!r}: step {inner.name!r} has no input {over!r} "
                f"(inputs: {', '.join(inner.inputs) or 'none'})"
            )
        collect = on_error == "collect"
        inputs: dict[str, Any] = dict(inner.inputs)
        inputs[over] = DataUnit(over, _list_of(inner.inputs[over].type, optional=False))
        outputs: dict[str, Any] = {
            port: DataUnit(port, _list_of(unit.type, optional=collect)) for port, unit in inner.outputs.items()
        }
        if collect:
            if "errors" in outputs:
                raise ValueError(f"map {label!r}: on_error='collect' adds an output 'errors', which the step has")
            outputs["errors"] = DataUnit("errors", list)
        super().__init__(label, inputs=inputs, outputs=outputs, **options)
        self.step = inner
        self.over = over
        self.max_concurrency = max_concurrency
        self.on_error: OnError = on_error
        self.description = self.description or inner.description
        self._invoke: Invoke | None = None

    @property
    def cancellable(self) -> bool:
        return self.step.cancellable

    async def aclose(self) -> None:
        await self.step.aclose()

    def _item_invoke(self) -> Invoke:
        # The inner step's own timeout and retry apply to each item.
        if self._invoke is None:
            self._invoke = wrap_invoke(self.step, None)
        return self._invoke

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any] | None:
        over = self.over
        items = inputs[over]
        if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
            raise TypeError(f"map {self.name!r}: input {over!r} must be a list, got {type(items).__name__}")
        count = len(items)
        shared = {k: v for k, v in inputs.items() if k != over}
        results: list[Any] = [None] * count
        failures: list[ItemFailed | None] = [None] * count
        invoke = self._item_invoke()
        context = current_context()
        collect = self.on_error == "collect"
        positions = iter(range(count))

        async def run_item(index: int) -> Any:
            values = dict(shared)
            values[over] = items[index]
            if context is None:
                return await invoke(values) or {}
            sink = context.sink
            item_step = f"{context.step}[{index}]"
            # The item's own context: a nested workflow or agent gets a run id and path per item.
            item_context = StepContext(
                context.run_id,
                item_step,
                f"{context.path}[{index}]",
                sink,
                context.usage,
                context.loop,
                context.thread,
                context.clock,
                context.firing,
                context.journal,
            )
            token = _current.set(item_context)
            try:
                if sink is not None:
                    sink(
                        StepStarted(
                            context.run_id, context.run_path, step=item_step, inputs=values, firing=context.firing
                        )
                    )
                    started = time.perf_counter()
                try:
                    outcome = await invoke(values) or {}
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if sink is not None:
                        sink(
                            StepFailed(
                                context.run_id, context.run_path, step=item_step, error=exc, firing=context.firing
                            )
                        )
                    raise
                if sink is not None:
                    sink(
                        StepFinished(
                            context.run_id,
                            context.run_path,
                            step=item_step,
                            outputs=outcome,
                            duration=time.perf_counter() - started,
                            firing=context.firing,
                        )
                    )
                return outcome
            finally:
                _current.reset(token)

        async def worker() -> None:
            for index in positions:
                try:
                    if context is not None and context.journal is not None:
                        # Journaled per item: a resumed firing takes finished items from the journal.
                        results[index] = await context.recorded(f"map item {index}", functools.partial(run_item, index))
                    else:
                        results[index] = await run_item(index)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failure = ItemFailed(self.name, index, items[index], exc)
                    if not collect:
                        raise failure from exc
                    failures[index] = failure

        workers = min(self.max_concurrency or count, count)
        if workers == 1:
            await worker()
        elif workers > 1:
            await _run_workers(worker, workers)

        outputs: dict[str, Any] = {
            port: [None if r is None else r.get(port) for r in results] for port in self.step.outputs
        }
        if collect:
            outputs["errors"] = [f for f in failures if f is not None]
        return outputs

    def __repr__(self) -> str:
        return f"Map({self.name!r}, step={self.step.name!r}, over={self.over!r})"


async def _run_workers(worker: Callable[[], Any], count: int) -> None:
    """Run `count` copies of `worker` as tasks until all finish or one fails (then cancel the rest).

    One future is awaited for the whole group (no `asyncio.wait`/`gather` bookkeeping per task
    unless something failed or the map itself was cancelled).
    """
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    remaining = count
    failure: list[BaseException] = []

    def done(task: asyncio.Task[Any]) -> None:
        nonlocal remaining
        remaining -= 1
        if finished.done():
            return
        error = None if task.cancelled() else task.exception()
        if error is not None:
            failure.append(error)
            finished.set_result(None)
        elif remaining == 0:
            finished.set_result(None)

    tasks = [loop.create_task(worker()) for _ in range(count)]
    for task in tasks:
        task.add_done_callback(done)
    try:
        await finished
    finally:
        if remaining:
            # Fail fast, or the map itself was cancelled (timeout, run failed): stop the rest.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    if failure:
        raise failure[0]


__all__ = ["Map"]
