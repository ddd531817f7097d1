"""The server's runs: each one a task (or a long-lived handle) whose events are kept for readers.

A `ServerRun` is a sink on its workflow run: every event is numbered, kept in a bounded buffer
(so an SSE client can resume with `Last-Event-ID`) and handed to every live reader; it becomes
JSON only when someone reads it. Finished runs stay readable until `keep_finished` newer ones
have finished.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ...core.events import RunEvent
from ..run_display import jsonable
from .problems import ApiProblem, problem_for_failure

if TYPE_CHECKING:
    from ...core.journal import JournalStore
    from ...core.workflow import Workflow, WorkflowHandle
    from .run_bus import RemoteRun, RunBus

#: (sequence number, event type, event) as kept; readers get the event as JSON text.
Kept = tuple[int, str, RunEvent | None]
Record = tuple[int, str, str]
_END: Kept = (0, "", None)
HEARTBEAT: Record = (-1, "", "")


def encode(value: Any) -> str:
    return json.dumps(value, default=jsonable, ensure_ascii=False, separators=(",", ":"))


class ServerRun:
    """One run started through the server: its status, result and numbered events."""

    def __init__(
        self,
        run_id: str,
        workflow: Workflow,
        *,
        mode: str,
        owner: str,
        inputs: Mapping[str, Any],
        max_events: int = 10_000,
    ) -> None:
        self.id = run_id
        self.workflow = workflow
        self.mode = mode  # "wait", "background", "stream" or "long_lived"
        self.owner = owner
        self.inputs = dict(inputs)
        self.status = "running"
        self.created = time.time()
        self.finished: float | None = None
        self.outputs: dict[str, Any] = {}
        self.usage: dict[str, int] = {}
        self.problem: ApiProblem | None = None
        self.task: asyncio.Task[Any] | None = None
        self.handle: WorkflowHandle | None = None
        #: Where a durable run is journaled (it can wait for input and outlive the server).
        self.journal: JournalStore | None = None
        #: What a waiting durable run waits for (from the journal).
        self.where = ""
        self._events: deque[Kept] = deque(maxlen=max_events)
        self._seq = 0
        self._readers: list[asyncio.Queue[Kept]] = []
        self.done = asyncio.Event()
        #: Called once when the run ends (the registry forgets old runs).
        self.on_finish: Callable[[ServerRun], None] | None = None
        #: Mirrors the run for other replicas (when the server shares runs through Redis).
        self.bus: RunBus | None = None

    # -- the sink ---------------------------------------------------------------------------------
    def on_event(self, event: RunEvent) -> None:
        self._seq += 1
        record = (self._seq, event.type, event)
        self._events.append(record)
        for reader in self._readers:
            reader.put_nowait(record)
        if self.bus is not None:
            self.bus.event(self, record)
        if event.run_id == self.id and event.type in ("run_finished", "run_failed"):
            self.usage = dict(getattr(event, "usage", {}) or {})

    # -- life -------------------------------------------------------------------------------------
    def finish(self, status: str, *, outputs: Mapping[str, Any] | None = None, error: BaseException | None = None):
        if self.done.is_set():
            return
        self.status = status
        self.finished = time.time()
        if outputs is not None:
            self.outputs = dict(outputs)
        if error is not None:
            self.problem = problem_for_failure(error)
        self.done.set()
        for reader in self._readers:
            reader.put_nowait(_END)
        if self.bus is not None:
            self.bus.ended(self)
        if self.on_finish is not None:
            self.on_finish(self)

    def reopen(self) -> None:
        """A waiting durable run goes on (it was given input)."""
        self.status, self.finished, self.where, self.problem = "running", None, "", None
        self.done.clear()
        if self.bus is not None:
            self.bus.reopened(self)

    @property
    def state(self) -> str:
        if self.handle is not None and not self.done.is_set():
            return "running" if self.handle.run.active else "waiting"
        return self.status

    async def cancel(self) -> None:
        """Stop the run (work in flight is cancelled); a finished run stays as it was."""
        if self.handle is not None and not self.done.is_set():
            await self.handle.stop()
            self.finish("cancelled", outputs=self.handle.outputs)
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- readers ----------------------------------------------------------------------------------
    async def records(self, after: int = 0, *, heartbeat: float | None = None) -> AsyncIterator[Record]:
        """Events numbered after `after`, first those kept, then live ones until the run ends.

        With `heartbeat`, HEARTBEAT is yielded whenever that many seconds pass without an event.
        """
        queue: asyncio.Queue[Kept] = asyncio.Queue()
        kept = [record for record in self._events if record[0] > after]
        if self.done.is_set():
            for record in kept:
                yield _json(record)
            return
        self._readers.append(queue)
        try:
            last = after
            for record in kept:
                last = record[0]
                yield _json(record)
            while True:
                if heartbeat is None or not queue.empty():
                    record = queue.get_nowait() if not queue.empty() else await queue.get()
                else:
                    try:
                        async with asyncio.timeout(heartbeat):
                            record = await queue.get()
                    except TimeoutError:
                        yield HEARTBEAT
                        continue
                if record is _END:
                    return
                if record[0] > last:
                    last = record[0]
                    yield _json(record)
        finally:
            self._readers.remove(queue)

    @property
    def event_count(self) -> int:
        """How many events the run has had (the number of the last one)."""
        return self._seq

    @property
    def first_kept(self) -> int:
        """The number of the oldest event still kept (events before it cannot be resumed from)."""
        return self._events[0][0] if self._events else self._seq + 1

    def view(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": self.id,
            "workflow": self.workflow.name,
            "mode": self.mode,
            "status": self.state,
            "created": self.created,
            "finished": self.finished,
            "inputs": self.inputs,
            "outputs": self.handle.outputs if self.handle is not None and not self.done.is_set() else self.outputs,
            "usage": self.usage,
            "events": self._seq,
            "owner": self.owner,
            "durable": self.journal is not None,
        }
        if self.where:
            data["waiting_for"] = self.where
        if self.problem is not None:
            data["error"] = {"status": self.problem.status, "detail": self.problem.detail}
        return json.loads(encode(data))


def _looks_like_id(run_id: str) -> bool:
    return 0 < len(run_id) <= 64 and all(c.isalnum() or c in "-_" for c in run_id)


def _bus_unreachable(exc: BaseException) -> ApiProblem:
    from ...infrastructure.security.redaction import redact

    said = redact(str(exc)) or type(exc).__name__
    detail = f"the runs of the other replicas cannot be read: Redis did not answer ({said})"
    return ApiProblem(503, detail, headers={"Retry-After": "5"})


def _json(record: Kept) -> Record:
    seq, kind, event = record
    assert event is not None
    return seq, kind, encode(event.to_dict())


class RunRegistry:
    """Every run the server knows, by id; finished ones are dropped oldest first past `keep_finished`."""

    def __init__(
        self,
        *,
        keep_finished: int = 1000,
        max_events: int = 10_000,
        journal: JournalStore | None = None,
        bus: RunBus | None = None,
    ) -> None:
        self.runs: OrderedDict[str, ServerRun] = OrderedDict()
        self._journal = journal
        #: Shares runs with the other replicas (watch, list and cancel them from any of them).
        self.bus = bus
        self._cancelling: set[asyncio.Task[None]] = set()
        self._finished: deque[str] = deque()
        self.keep_finished = keep_finished
        self.max_events = max_events
        self.accepting = True

    def get(self, run_id: str) -> ServerRun:
        run = self.runs.get(run_id)
        if run is None:
            raise ApiProblem.field(404, "run_id", f"no run {run_id!r} (it never existed or was forgotten)")
        return run

    def _check_accepting(self) -> None:
        if not self.accepting:
            raise ApiProblem(503, "the server is shutting down and accepts no new runs", headers={"Retry-After": "5"})

    def _add(self, run: ServerRun) -> ServerRun:
        self.runs[run.id] = run
        run.on_finish = self._forget_old
        self._share(run)
        return run

    def _share(self, run: ServerRun) -> None:
        if self.bus is not None and run.bus is None:
            run.bus = self.bus
            self.bus.started(run)

    async def open(self) -> None:
        """Start sharing runs with the other replicas (when there is a bus)."""
        if self.bus is not None:
            await self.bus.start(self._cancel_for_another_replica)

    async def aclose(self) -> None:
        """Stop sharing (after `shutdown`: the runs' ends reach the other replicas first)."""
        if self.bus is not None:
            await self.bus.aclose()
        await asyncio.gather(*self._cancelling, return_exceptions=True)

    async def _cancel_for_another_replica(self, run_id: str) -> None:
        run = self.runs.get(run_id)
        if run is None or run.done.is_set():
            return
        # In a task: the bus's listener goes on while the run winds down.
        task = asyncio.ensure_future(run.cancel())
        self._cancelling.add(task)
        task.add_done_callback(self._cancelling.discard)

    def _forget_old(self, run: ServerRun) -> None:
        self._finished.append(run.id)
        while len(self._finished) > self.keep_finished:
            self.runs.pop(self._finished.popleft(), None)

    @property
    def journal(self) -> JournalStore:
        """Where durable runs are journaled (default: the SQL journal under NANOBRAIN_HOME)."""
        if self._journal is None:
            from ...core.durable import default_store

            self._journal = default_store()
        return self._journal

    def start(
        self,
        workflow: Workflow,
        inputs: Mapping[str, Any],
        *,
        mode: str,
        owner: str,
        run_id: str | None = None,
        durable: bool = False,
    ) -> ServerRun:
        """Start a request/response run in a task of its own (it outlives the request in background mode).

        A durable run is journaled: given too few inputs it waits for them, and it can be continued
        (`resume`) by this server or, after a restart, the next one.
        """
        self._check_accepting()
        from ...core.run import new_run_id

        run = ServerRun(
            run_id or new_run_id(), workflow, mode=mode, owner=owner, inputs=inputs, max_events=self.max_events
        )
        run.journal = self.journal if durable else None
        sinks = (run.on_event,)
        run.task = asyncio.ensure_future(
            self._drive(run, lambda: workflow.run(dict(inputs), run_id=run.id, sinks=sinks, durable=run.journal))
        )
        return self._add(run)

    def resume(self, run: ServerRun, send: Mapping[str, Any], fire: list[str]) -> None:
        """Give a waiting (or interrupted) durable run its input; it goes on in a task of its own."""
        self._check_accepting()
        run.reopen()
        workflow, sinks = run.workflow, (run.on_event,)
        run.task = asyncio.ensure_future(
            self._drive(run, lambda: workflow.resume(run.id, durable=run.journal, sinks=sinks, send=send, fire=fire))
        )

    async def _drive(self, run: ServerRun, work: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        try:
            outputs = await work()
        except asyncio.CancelledError:
            run.finish("cancelled")
            raise
        except Exception as exc:
            run.finish("failed", error=exc)
            return
        status = "succeeded"
        if run.journal is not None:
            record = await run.journal.get(run.id)
            if record is not None and record.status == "waiting":
                status, run.where = "waiting", record.where
        run.finish(status, outputs=outputs)

    async def find(self, run_id: str, workflows: Mapping[str, Workflow]) -> ServerRun | RemoteRun:
        """The run, from memory; else from another replica (through the bus); else, for a durable
        run of an earlier server or a replica that stopped, from the journal."""
        run = self.runs.get(run_id)
        if run is not None:
            return run
        if self.bus is not None and _looks_like_id(run_id):
            from .run_bus import RemoteRun

            try:
                view = await self.bus.view(run_id)
            except Exception as exc:
                raise _bus_unreachable(exc) from None
            # A durable run that waits or was interrupted is taken over through the journal instead.
            if view is not None and not (view.get("durable") and view["status"] in ("waiting", "interrupted")):
                return RemoteRun(self.bus, view, await self.bus.first_kept(run_id, view["events"]))
        return await self.find_local(run_id, workflows)

    async def find_local(self, run_id: str, workflows: Mapping[str, Workflow]) -> ServerRun:
        """The run from memory or, for a durable run of an earlier server, from the journal."""
        run = self.runs.get(run_id)
        if run is not None:
            return run
        record = await self.journal.get(run_id) if _looks_like_id(run_id) else None
        if record is None or record.parent_run_id:
            return self.get(run_id)  # the 404
        workflow = workflows.get(record.workflow)
        if workflow is None:
            served = f"run {run_id!r} belongs to workflow {record.workflow!r}, which this server does not serve"
            raise ApiProblem.field(404, "run_id", served)
        run = ServerRun(run_id, workflow, mode="durable", owner="", inputs={}, max_events=self.max_events)
        run.journal = self.journal
        run.created = record.created
        status = {"finished": "succeeded", "waiting": "waiting", "failed": "failed"}.get(record.status, "interrupted")
        run.where = record.where if status == "waiting" else ""
        run.finish(status)
        if record.error:
            run.problem = ApiProblem(500, record.error, title="Run failed")
        return self._add(run)

    async def start_long_lived(
        self, workflow: Workflow, inputs: Mapping[str, Any], *, owner: str
    ) -> ServerRun:
        """A run whose triggers stay armed: it waits for input until cancelled."""
        self._check_accepting()
        from ...core.run import new_run_id

        run = ServerRun(
            new_run_id(), workflow, mode="long_lived", owner=owner, inputs=inputs, max_events=self.max_events
        )
        self._share(run)  # before it begins: its first events reach the other replicas too
        run.handle = workflow.start(run_id=run.id, sinks=(run.on_event,))
        await run.handle.begin()
        self._add(run)
        if inputs:
            await run.handle.send(**inputs)
        return run

    async def views(
        self, *, limit: int, status: str | None = None, workflow: str | None = None
    ) -> list[dict[str, Any]]:
        """The views of the newest `limit` runs (of `status`, of `workflow`), oldest first: this server's,
        and with a bus every replica's."""

        def wanted(state: str, name: str) -> bool:
            return (status is None or state == status) and (workflow is None or name == workflow)

        mine = [run for run in self.runs.values() if wanted(run.state, run.workflow.name)][-limit:]
        views = {run.id: run.view() for run in mine}
        if self.bus is not None:
            try:
                shared = await self.bus.views(max(limit, 1000))
            except Exception as exc:
                raise _bus_unreachable(exc) from None
            for view in shared:
                if view["run_id"] not in views and wanted(view["status"], view["workflow"]):
                    views[view["run_id"]] = view
        ordered = sorted(views.values(), key=lambda view: view["created"])
        return ordered[-limit:]

    @property
    def active(self) -> list[ServerRun]:
        return [r for r in self.runs.values() if not r.done.is_set()]

    async def shutdown(self) -> None:
        """Accept no new runs and cancel those in flight."""
        self.accepting = False
        await asyncio.gather(*(run.cancel() for run in self.active), return_exceptions=True)
