"""A workflow as an a2a-sdk `AgentExecutor`: messages become runs, run events become task updates.

The task id is the run id. Runs are durable (a journal store, in memory by default): a run
that waits for an input leaves the task `input-required`, and the next message on that task
resumes the run with it. Step progress becomes `working` status updates, streamed tokens an
artifact that grows chunk by chunk, the outputs a final `outputs` artifact.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from a2a.helpers.proto_helpers import new_task, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events.event_queue_v2 import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import TaskState

from ...core.data_units import MISSING
from ...core.events import RunEvent, StepFinished, StepStarted, Token
from .parts import InvalidInput, message_inputs, output_parts

if TYPE_CHECKING:
    from ...core.journal import JournalStore
    from ...core.workflow import Workflow

TOKENS_ARTIFACT = "tokens"
OUTPUTS_ARTIFACT = "outputs"


class WorkflowExecutor(AgentExecutor):
    """Runs `workflow` for each A2A message (see the module docstring)."""

    def __init__(self, workflow: Workflow, *, store: JournalStore | None = None) -> None:
        from ...core.durable import MemoryJournalStore

        self.workflow = workflow
        #: With a store of its own, every run is journaled (tasks outlive the process); with the
        #: memory default, only runs that lack an input (they wait, and must be continued).
        self.journal_all = store is not None
        self.store: JournalStore = store if store is not None else MemoryJournalStore()
        from ...core.triggers import Manual

        # A manual step may leave a run waiting even with every input given.
        self._has_manual = any(isinstance(s.trigger, Manual) for s in workflow.walk())

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id, context.context_id
        assert task_id is not None and context_id is not None and context.message is not None
        updater = TaskUpdater(event_queue, task_id, context_id)
        task = context.current_task
        if task is None:
            await event_queue.enqueue_event(
                new_task(task_id, context_id, TaskState.TASK_STATE_SUBMITTED, history=[context.message])
            )
        resuming = task is not None and task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        record = await self.store.get(task_id) if resuming else None
        try:
            waiting = _waiting_inputs(record.where) if record is not None else []
            inputs = message_inputs(context.message, self.workflow, waiting_for=waiting)
        except InvalidInput as exc:
            await updater.reject(updater.new_agent_message([new_text_part(str(exc))]))
            return
        await updater.start_work()
        events: asyncio.Queue[RunEvent] = asyncio.Queue()
        complete = not self._has_manual and all(
            name in inputs or unit.default is not MISSING for name, unit in self.workflow.inputs.items()
        )
        if record is not None:
            run = self.workflow.resume(task_id, durable=self.store, sinks=[events.put_nowait], send=inputs)
        elif complete and not self.journal_all:
            run = self.workflow.invoke(inputs, run_id=task_id, sinks=[events.put_nowait], durable=False)
        else:
            run = self.workflow.invoke(inputs, run_id=task_id, sinks=[events.put_nowait], durable=self.store)
        try:
            outputs = await _relay(run, events, updater, task_id)
        except Exception as exc:  # the task fails; the caller reads why in the status message
            await updater.failed(updater.new_agent_message([new_text_part(f"{type(exc).__name__}: {exc}")]))
            return
        record = await self.store.get(task_id) if not complete or self.journal_all or record else None
        if record is not None and record.status == "waiting":
            await updater.requires_input(updater.new_agent_message([new_text_part(f"waiting for {record.where}")]))
            return
        await updater.add_artifact(output_parts(outputs), artifact_id=f"{task_id}-{OUTPUTS_ARTIFACT}", name="outputs")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        # The SDK has cancelled `execute` (and with it the run, which stays resumable); say so.
        assert context.task_id is not None and context.context_id is not None
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


async def _relay(run: Any, events: asyncio.Queue[RunEvent], updater: TaskUpdater, task_id: str) -> dict[str, Any]:
    """Drive the run while turning its events into task updates, in order."""
    runner: asyncio.Task[dict[str, Any]] = asyncio.ensure_future(run)
    runner.add_done_callback(lambda _: events.put_nowait(_DONE))
    tokens_started = False
    try:
        while (event := await events.get()) is not _DONE:
            if isinstance(event, Token):
                await updater.add_artifact(
                    [new_text_part(event.text)],
                    artifact_id=f"{task_id}-{TOKENS_ARTIFACT}",
                    name=TOKENS_ARTIFACT,
                    append=tokens_started,
                    last_chunk=False,
                )
                tokens_started = True
            elif isinstance(event, (StepStarted, StepFinished)):
                verb = "started" if isinstance(event, StepStarted) else "finished"
                await updater.update_status(
                    TaskState.TASK_STATE_WORKING,
                    updater.new_agent_message([new_text_part(f"{event.path}/{event.step} {verb}")]),
                    metadata={"nanobrain": {"event": event.type, "path": event.path, "step": event.step}},
                )
        return await runner
    finally:
        if not runner.done():
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)


_DONE: Any = RunEvent("", "")


def _waiting_inputs(where: str) -> list[str]:
    """The inputs a waiting run needs, from its record (`input a, b; manual step x`)."""
    for part in where.split(";"):
        part = part.strip()
        if part.startswith("input "):
            return [name.strip() for name in part[len("input ") :].split(",")]
    return []
