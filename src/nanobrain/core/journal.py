"""Durable runs: what a run journals, and the small store interface it journals to.

A durable run writes, at step boundaries, only what cannot be recomputed: the inputs it was
sent, the steps fired from outside (sources, manual and timer firings), each completed
firing's outputs, recorded model calls, and its end. Everything else (unit values, join
queues, pending firings, cycle counters) follows deterministically from replaying those
entries in order, so resume rebuilds the complete run state without re-executing a completed
firing. A firing that was in flight when the process died runs again: at-least-once for the
step in flight, with `StepContext.idempotency_key` to make its side effects exactly-once.

Storage grows with the work: a value equal to the one last journaled for the same place is
not stored again, and a list (or string) that grew is stored as the part that was added.
Entries are pickled, like the workflow's own Python objects: a journal is as trusted as the
workflow code, and lives owner-only under NANOBRAIN_HOME by default.
"""

from __future__ import annotations

import asyncio
import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import NanoBrainError

#: Entry kinds.
SEND = "send"  # workflow inputs: data = {name: value}
FIRE = "fire"  # a step fired from outside (source, manual, timer): step
DONE = "done"  # a firing completed: step, firing, data = {output: value}
CALL = "call"  # a recorded call inside a firing (a model call): step, firing, data = (key, value)

_KEEP = 0  # the same value as last time
_FULL = 1  # the whole value
_GREW = 2  # the previous list/str/tuple plus this suffix


class JournalError(NanoBrainError):
    """A journal cannot be used as asked (corrupt, newer format, changed workflow, taken)."""


class RunLocked(JournalError):
    """Another live process holds the run's lease."""


class RunCorrupt(JournalError):
    """A journal entry of this run cannot be read; other runs are unaffected."""


@dataclass
class RunRecord:
    """One durable run as the store lists it."""

    run_id: str
    workflow: str
    #: running, waiting, finished, failed, interrupted, corrupt
    status: str = "running"
    #: Structural description of the workflow when the run started (see `describe_workflow`).
    definition: dict[str, Any] = field(default_factory=dict)
    #: Where the workflow came from (a YAML path or `module:attr`), so a CLI can load it again.
    source: str = ""
    #: Which step the run is on or waits for (for listings).
    where: str = ""
    error: str = ""
    created: float = 0.0
    updated: float = 0.0
    entries: int = 0
    bytes: int = 0
    owner: str = ""
    parent_run_id: str | None = None


class JournalStore(Protocol):
    """Where durable runs are kept (SQL in `nanobrain.infrastructure.data.journal`, memory for tests)."""

    async def create(self, record: RunRecord) -> None:
        """Add a new run. Raises JournalError when the id is taken."""

    async def get(self, run_id: str) -> RunRecord | None: ...

    async def acquire(self, run_id: str, owner: str) -> RunRecord:
        """Take the run's lease for `owner`; RunLocked when a live owner holds it."""

    async def release(self, run_id: str, owner: str) -> None: ...

    async def append(self, run_id: str, first_seq: int, entries: Sequence[bytes]) -> None:
        """Store entries `first_seq, first_seq + 1, ...`; durable when this returns."""

    async def entries(self, run_id: str) -> list[bytes]: ...

    async def update(self, run_id: str, **fields: Any) -> None:
        """Change `status`, `where`, `error` of a run."""

    async def runs(self, *, status: str | None = None, limit: int = 100) -> list[RunRecord]: ...

    async def prune(self, *, finished_before: float) -> int:
        """Delete finished and failed runs that ended before the given time; return how many."""


def process_owner() -> str:
    """An owner id for leases: host, pid and a random part (pids are reused)."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def owner_alive(owner: str) -> bool:
    """Whether a lease's owner may still run: unknown hosts count as alive; on this host, the pid."""
    import socket

    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunJournal:
    """The journal of one run: encodes entries in order and writes them to the store.

    `add` only encodes (cheap, synchronous, in order); `flush` makes everything added so far
    durable. The engine flushes before a completed firing's outputs move on, so that no step
    runs on a value the journal could lose.
    """

    __slots__ = ("_buffer", "_last", "_lock", "bytes", "calls", "run_id", "seq", "store")

    def __init__(self, store: JournalStore, run_id: str, *, seq: int = 0) -> None:
        self.store = store
        self.run_id = run_id
        self.seq = seq
        self.bytes = 0
        self._buffer: list[bytes] = []
        self._last: dict[tuple[str, str], Any] = {}
        #: Recorded calls of this run, by (step, firing, key): what `StepContext.recorded` replays.
        self.calls: dict[tuple[str, int, str], Any] = {}
        #: Orders concurrent flushes (concurrent firings, a map's items): appends reach the store
        #: in sequence order, so a crash never leaves a later entry stored and an earlier one lost.
        self._lock: asyncio.Lock | None = None

    def add(self, kind: str, step: str = "", firing: int = 0, data: Any = None) -> None:
        if kind in (DONE, SEND):
            data = self._delta(step, data)
        encoded = pickle.dumps((kind, step, firing, data), protocol=pickle.HIGHEST_PROTOCOL)
        self.bytes += len(encoded)
        self._buffer.append(encoded)

    async def flush(self) -> None:
        if not self._buffer:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            # Empty now: a flush that held the lock took (and stored) our entries with its own.
            if not self._buffer:
                return
            buffer, self._buffer = self._buffer, []
            first = self.seq
            self.seq += len(buffer)
            await self.store.append(self.run_id, first, buffer)

    def _delta(self, step: str, values: Mapping[str, Any]) -> dict[str, tuple[int, Any]]:
        last = self._last
        encoded: dict[str, tuple[int, Any]] = {}
        for name, value in values.items():
            key = (step, name)
            previous = last.get(key, _MISSING)
            if previous is not _MISSING and type(previous) is type(value):
                if _same(previous, value):
                    encoded[name] = (_KEEP, None)
                    continue
                grew = isinstance(value, list | str | tuple) and len(value) > len(previous)
                if grew and value[: len(previous)] == previous:
                    encoded[name] = (_GREW, value[len(previous) :])
                    last[key] = _frozen(value)
                    continue
            encoded[name] = (_FULL, value)
            last[key] = _frozen(value)
        return encoded

    def replay(self, raw: Sequence[bytes]) -> list[tuple[str, str, int, Any]]:
        """Decode stored entries (undoing the deltas) and prime this journal to continue after them."""
        entries: list[tuple[str, str, int, Any]] = []
        last = self._last
        for index, blob in enumerate(raw):
            try:
                kind, step, firing, data = pickle.loads(blob)
            except Exception as exc:
                raise RunCorrupt(f"run {self.run_id}: journal entry {index} cannot be read ({exc})") from None
            if kind in (DONE, SEND):
                values: dict[str, Any] = {}
                for name, (how, part) in data.items():
                    key = (step, name)
                    if how == _KEEP:
                        value = last[key]
                    elif how == _GREW:
                        value = last[key] + part
                    else:
                        value = part
                    # No copies while decoding (nothing runs meanwhile); the last values are
                    # copied once at the end, for the deltas this journal writes from now on.
                    last[key] = value
                    values[name] = value
                data = values
            elif kind == CALL:
                call_key, value = data
                self.calls[(step, firing, call_key)] = value
            entries.append((kind, step, firing, data))
            self.bytes += len(blob)
        for key, value in last.items():
            last[key] = _frozen(value)
        self.seq = len(raw)
        return entries


class _Missing:
    pass


_MISSING = _Missing()


def _frozen(value: Any) -> Any:
    # Keep a copy of a list: the step may append to the very object it returned.
    return list(value) if type(value) is list else value


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # values whose == raises or is ambiguous (arrays) are stored again
        return False


def describe_workflow(workflow: Any) -> dict[str, Any]:
    """The structure a journal depends on: steps (kind, inputs, outputs, trigger) and links,
    nested workflows included. Resume refuses a run whose workflow no longer matches."""
    from .steps import Step
    from .workflow import Workflow

    steps: dict[str, Any] = {}
    for name, step in workflow.steps.items():
        described: dict[str, Any] = {
            "kind": f"{type(step).__module__}.{type(step).__qualname__}",
            "inputs": sorted(step.inputs),
            "outputs": sorted(step.outputs),
            "trigger": step.trigger.describe(),
            "concurrency": step.concurrency,
        }
        fn = getattr(step, "fn", None)
        if fn is not None:
            described["function"] = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
        inner = getattr(step, "step", None)
        if isinstance(inner, Step):  # a map: what runs per item matters to a resumed run
            item_fn = getattr(inner, "fn", None)
            described["item_step"] = f"{type(inner).__qualname__} {inner.name}" + (
                f" {getattr(item_fn, '__module__', '?')}.{getattr(item_fn, '__qualname__', '?')}" if item_fn else ""
            )
        if isinstance(step, Workflow):
            described["workflow"] = describe_workflow(step)
        steps[name] = described
    links = sorted(
        f"{link.source} -> {link.target} ({type(link).__name__}{', ' + link.fan_in if link.fan_in else ''})"
        for link in workflow.links
    )
    return {"name": workflow.name, "inputs": sorted(workflow.inputs), "outputs": sorted(workflow.outputs),
            "steps": steps, "links": links}


def definition_changes(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """What changed between two `describe_workflow` results, in words."""
    changes: list[str] = []
    for key in ("inputs", "outputs", "links"):
        removed = sorted(set(old.get(key, [])) - set(new.get(key, [])))
        added = sorted(set(new.get(key, [])) - set(old.get(key, [])))
        if removed:
            changes.append(f"{prefix}{key} removed: {', '.join(removed)}")
        if added:
            changes.append(f"{prefix}{key} added: {', '.join(added)}")
    old_steps, new_steps = old.get("steps", {}), new.get("steps", {})
    for name in sorted(set(old_steps) - set(new_steps)):
        changes.append(f"{prefix}step {name!r} removed")
    for name in sorted(set(new_steps) - set(old_steps)):
        changes.append(f"{prefix}step {name!r} added")
    for name in sorted(set(old_steps) & set(new_steps)):
        a, b = old_steps[name], new_steps[name]
        if "workflow" in a and "workflow" in b:
            changes.extend(definition_changes(a["workflow"], b["workflow"], f"{prefix}{name}/"))
        for field_name in sorted((set(a) | set(b)) - {"workflow"}):
            if a.get(field_name) != b.get(field_name):
                changes.append(f"{prefix}step {name!r} {field_name}: {a.get(field_name)} -> {b.get(field_name)}")
    return changes


__all__ = [
    "CALL",
    "DONE",
    "FIRE",
    "SEND",
    "JournalError",
    "JournalStore",
    "RunCorrupt",
    "RunJournal",
    "RunLocked",
    "RunRecord",
    "definition_changes",
    "describe_workflow",
    "owner_alive",
    "process_owner",
]
