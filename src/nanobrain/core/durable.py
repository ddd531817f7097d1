"""Running, resuming and feeding durable runs (the journal's bookkeeping around a `Run`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .data_units import MISSING
from .errors import RunError
from .events import EventSink
from .journal import (
    SEND,
    JournalError,
    JournalStore,
    RunCorrupt,
    RunJournal,
    RunLocked,
    RunRecord,
    definition_changes,
    describe_workflow,
    owner_alive,
    process_owner,
)
from .run import Run, new_run_id
from .sinks import fan_out
from .triggers import Manual

if TYPE_CHECKING:
    from .workflow import Workflow

END = "end"  # the run's outputs, journaled when it finishes

_owner: str | None = None


def this_process() -> str:
    """The lease owner id of this process."""
    global _owner
    if _owner is None:
        _owner = process_owner()
    return _owner


def default_store() -> JournalStore:
    """The SQL journal under NANOBRAIN_HOME (or NANOBRAIN_DATABASE_URL)."""
    from ..infrastructure.data.journal import SqlJournalStore

    return SqlJournalStore.default()


def resolve_store(durable: bool | JournalStore | None) -> JournalStore | None:
    if durable is None or durable is False:
        return None
    if durable is True:
        return default_store()
    return durable


async def run_durable(
    workflow: Workflow,
    inputs: Mapping[str, Any],
    *,
    store: JournalStore,
    run_id: str | None = None,
    sinks: Sequence[EventSink] = (),
    source: str = "",
) -> dict[str, Any]:
    """Run `workflow` journaled in `store`. Missing inputs make the run wait for them."""
    run_id = run_id or new_run_id()
    values = await workflow._complete_inputs(inputs, allow_missing=True)
    now = time.time()
    record = RunRecord(
        run_id,
        workflow.name,
        definition=describe_workflow(workflow),
        source=source,
        created=now,
        updated=now,
        owner=this_process(),
    )
    await store.create(record)
    journal = RunJournal(store, run_id)
    run = workflow._make_run(fan_out(sinks, run_id), run_id=run_id, journal=journal)
    try:
        return await _drive(workflow, run, store, values, replay=None)
    finally:
        await asyncio.shield(store.release(run_id, this_process()))


async def resume_durable(
    workflow: Workflow,
    run_id: str,
    *,
    store: JournalStore,
    sinks: Sequence[EventSink] = (),
    send: Mapping[str, Any] | None = None,
    fire: Sequence[str] = (),
    force: bool = False,
) -> dict[str, Any]:
    """Continue a durable run after a crash, or give a waiting run its input (`send`, `fire`).

    Completed firings are replayed from the journal, not executed again; firings that were in
    flight run again. Refused when another live process holds the run, when the workflow
    changed since the run started (unless `force`), or when the journal is corrupt.
    """
    record = await store.acquire(run_id, this_process())
    try:
        if record.status == "corrupt":
            raise RunCorrupt(f"run {run_id} is marked corrupt: {record.error}")
        changes = definition_changes(record.definition, describe_workflow(workflow))
        if changes and not force:
            raise JournalError(
                f"run {run_id} was started with a different definition of workflow {record.workflow!r}: "
                + "; ".join(changes[:10])
                + (f" (and {len(changes) - 10} more)" if len(changes) > 10 else "")
                + ". Resume with the workflow it started with, or force it"
            )
        journal = RunJournal(store, run_id)
        try:
            entries = journal.replay(await store.entries(run_id))
        except RunCorrupt as exc:
            await store.update(run_id, status="corrupt", error=str(exc))
            raise
        finished = [data for kind, _, _, data in entries if kind == END]
        if record.status == "finished" and finished and not send and not fire:
            return dict(finished[-1])
        entries = [e for e in entries if e[0] != END]
        run = workflow._make_run(fan_out(sinks, run_id), run_id=run_id, journal=journal)
        inputs: dict[str, Any] = next((data for kind, _, _, data in entries if kind == SEND), {})
        return await _drive(workflow, run, store, inputs, replay=entries, send=send, fire=fire)
    finally:
        await store.release(run_id, this_process())


async def _drive(
    workflow: Workflow,
    run: Run,
    store: JournalStore,
    values: Mapping[str, Any],
    *,
    replay: Sequence[tuple[str, str, int, Any]] | None,
    send: Mapping[str, Any] | None = None,
    fire: Sequence[str] = (),
) -> dict[str, Any]:
    run_id = run.run_id
    journal = run.journal
    assert journal is not None
    try:
        if send or fire:
            outputs = await _continue_with(run, values, replay or (), send or {}, fire)
        else:
            outputs = await run.execute(values, replay=replay)
    except (asyncio.CancelledError, KeyboardInterrupt):
        # Not a failure of the run: it stays resumable, as journaled so far.
        await asyncio.shield(_mark(store, run_id, status="interrupted", where=_where(run)))
        raise
    except Exception as exc:
        await _mark(store, run_id, status="failed", error=f"{type(exc).__name__}: {exc}", where=_where(run))
        raise
    waiting = waiting_for(workflow, run)
    if waiting:
        await journal.flush()
        await _mark(store, run_id, status="waiting", where=waiting)
    else:
        journal.add(END, data=outputs)
        await journal.flush()
        await _mark(store, run_id, status="finished", where="")
    return outputs


async def _continue_with(
    run: Run,
    inputs: Mapping[str, Any],
    replay: Sequence[tuple[str, str, int, Any]],
    send: Mapping[str, Any],
    fire: Sequence[str],
) -> dict[str, Any]:
    """Replay, then deliver new inputs and manual firings, and run until idle."""
    await run.execute(inputs, replay=replay)
    if send:
        unknown = [name for name in send if name not in run.inputs]
        if unknown:
            raise RunError(f"run {run.run_id} has no input {', '.join(map(repr, unknown))}")
        await run.send(send)
    for step in fire:
        run.fire(step)
    await run.wait_idle()
    if run.error is not None:
        raise run.error
    return run.output_values()


async def nested_journal(
    store: JournalStore, run_id: str, workflow: Workflow, parent_run_id: str
) -> tuple[RunJournal, list[tuple[str, str, int, Any]] | None]:
    """The journal of a workflow nested in a durable run: its own run in the same store, so a
    re-run of the parent's firing replays what the nested run had completed."""
    journal = RunJournal(store, run_id)
    record = await store.get(run_id)
    if record is None:
        now = time.time()
        await store.create(
            RunRecord(
                run_id,
                workflow.name,
                definition=describe_workflow(workflow),
                created=now,
                updated=now,
                parent_run_id=parent_run_id,
            )
        )
        return journal, None
    entries = journal.replay(await store.entries(run_id))
    return journal, [e for e in entries if e[0] != END] or None


def waiting_for(workflow: Workflow, run: Run) -> str:
    """What an idle run waits for: inputs never given, manual steps ready to fire. Empty: nothing."""
    missing = [name for name, unit in run.inputs.items() if unit._value is MISSING]
    manual = [
        sr.name
        for sr in run.steps
        if isinstance(sr.step.trigger, Manual) and sr.fired == 0 and sr.trigger.snapshot() is not None
    ]
    parts = []
    if missing:
        parts.append("input " + ", ".join(missing))
    if manual:
        parts.append("manual step " + ", ".join(manual))
    return "; ".join(parts)


def _where(run: Run) -> str:
    busy = [sr.name for sr in run.steps if sr.running or sr.pending]
    return ", ".join(busy)


async def _mark(store: JournalStore, run_id: str, **fields: Any) -> None:
    await store.update(run_id, **fields)


class MemoryJournalStore:
    """Journal in memory: for tests and for runs that only need resume within one process."""

    def __init__(self) -> None:
        self._records: dict[str, RunRecord] = {}
        self._entries: dict[str, list[bytes]] = {}

    async def create(self, record: RunRecord) -> None:
        if record.run_id in self._records:
            raise JournalError(f"a durable run with id {record.run_id!r} already exists")
        self._records[record.run_id] = record
        self._entries[record.run_id] = []

    async def get(self, run_id: str) -> RunRecord | None:
        return self._records.get(run_id)

    async def acquire(self, run_id: str, owner: str) -> RunRecord:
        record = self._records.get(run_id)
        if record is None:
            raise JournalError(f"no durable run with id {run_id!r}")
        if record.owner and record.owner != owner and owner_alive(record.owner):
            raise RunLocked(f"run {run_id} is being run by another process ({record.owner}); wait for it to end")
        record.owner = owner
        return record

    async def release(self, run_id: str, owner: str) -> None:
        record = self._records.get(run_id)
        if record is not None and record.owner == owner:
            record.owner = ""

    async def append(self, run_id: str, first_seq: int, entries: Sequence[bytes]) -> None:
        stored = self._entries[run_id]
        if first_seq != len(stored):
            raise JournalError(f"run {run_id}: journal entry {first_seq} written out of order")
        stored.extend(entries)
        record = self._records[run_id]
        record.entries += len(entries)
        record.bytes += sum(map(len, entries))

    async def entries(self, run_id: str) -> list[bytes]:
        return list(self._entries.get(run_id, []))

    async def update(self, run_id: str, **fields: Any) -> None:
        record = self._records[run_id]
        for name, value in fields.items():
            setattr(record, name, value)
        record.updated = time.time()

    async def runs(self, *, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        found = [r for r in self._records.values() if status is None or r.status == status]
        return sorted(found, key=lambda r: r.created, reverse=True)[:limit]

    async def prune(self, *, finished_before: float) -> int:
        old = [
            r.run_id
            for r in self._records.values()
            if r.status in ("finished", "failed") and r.updated < finished_before
        ]
        for run_id in old:
            del self._records[run_id]
            del self._entries[run_id]
        return len(old)


__all__ = ["MemoryJournalStore", "default_store", "resume_durable", "run_durable", "waiting_for"]
