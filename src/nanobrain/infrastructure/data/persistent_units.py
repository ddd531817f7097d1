"""Data units whose values live in a key-value store, so they survive a process restart.

`PersistentUnit` keeps its latest value (as JSON) under one key; `PersistentStreamUnit` keeps
every item, in order, and lets a consumer commit how far it has read. Both write to the store
before notifying subscribers, so a value anyone saw is on disk. Their `kind`s need an awaited
`set` (`awaits_set`), which the engine honours.

Copies made for runs (`clone()`) share the store, the key and the loaded value with the unit
they came from: a value a run sets is what the declared unit reads afterwards. Load a unit
(`await unit.load()`, or `await load_persistent(workflow)` for every one in a workflow) before
a run whose steps should see the stored value.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

from ...core.data_units import MISSING, UNIT_KINDS, DataUnit, _json_default
from ...core.errors import NanoBrainError
from ...core.parking_lot import ParkingLot
from .kv import KeyValueStore


class UnitNotLoaded(NanoBrainError, LookupError):
    """A persistent unit was read before its stored value was loaded."""


class _Cell:
    """What a unit and its copies share: the stored value as last loaded or written."""

    __slots__ = ("loaded", "lock", "value")

    def __init__(self) -> None:
        self.value: Any = MISSING
        self.loaded = False
        self.lock = asyncio.Lock()  # writes reach the store in the order they are made


def _encode(unit: DataUnit, value: Any) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False, default=_json_default).encode("utf-8")
    except (TypeError, ValueError) as exc:
        kind = type(value).__name__
        raise TypeError(f"persistent unit {unit.name!r} stores JSON; cannot store {kind}: {exc}") from None


def _decode(unit: DataUnit, key: str, raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"persistent unit {unit.name!r}: the value stored under {key!r} is not JSON: {exc}") from None


def _io_store(store: KeyValueStore, encryptor: Any) -> KeyValueStore:
    if encryptor is None:
        return store
    from ..security.encryption import EncryptedStore

    return EncryptedStore(store, encryptor)


class _StoredUnit(DataUnit):
    """What both persistent kinds share: a store, a key, optional encryption at rest."""

    awaits_set = True
    __slots__ = ("_io", "encryptor", "key", "store")

    def __init__(
        self,
        name: str = "unit",
        type: Any = None,
        *,
        store: KeyValueStore,
        key: str,
        default: Any = MISSING,
        encryptor: Any = None,
    ) -> None:
        super().__init__(name, type, default=default)
        if not key:
            raise ValueError(f"{self.kind} unit {name!r} needs a key to store its value under")
        self.store = store
        self.key = key
        self.encryptor = encryptor
        self._io = _io_store(store, encryptor)
        self._reset_state()

    def _reset_state(self) -> None:
        """Set up the kind's own in-memory state (its value cell or item log)."""
        raise NotImplementedError


class PersistentUnit(_StoredUnit):
    """The latest value, kept in `store` under `key` (JSON; sealed by `encryptor` when given).

    `default` is the value while the store has none. `await unit.load()` reads the stored
    value; `await unit.aget()` loads on first use; `get()` before loading is an error rather
    than a stale answer.
    """

    kind = "persistent"
    __slots__ = ("_cell",)

    def _reset_state(self) -> None:
        self._cell = _Cell()

    # -- reading ---------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._cell.loaded

    def get(self, default: Any = MISSING) -> Any:
        cell = self._cell
        if not cell.loaded:
            raise UnitNotLoaded(
                f"persistent unit {self.name!r} (key {self.key!r}) is not loaded yet: "
                "`await unit.load()` first, or read it with `await unit.aget()`"
            )
        if cell.value is MISSING:
            if default is not MISSING:
                return default
            raise LookupError(f"data unit {self.name!r} has no value yet (nothing stored under {self.key!r})")
        return cell.value

    @property
    def has_value(self) -> bool:
        return self._cell.loaded and self._cell.value is not MISSING

    async def load(self) -> Any:
        """Read the stored value (or the default when none is stored); returns it, or MISSING."""
        raw = await self._io.get(self.key)
        value = self.default if raw is None else self._check(_decode(self, self.key, raw))
        cell = self._cell
        cell.value, cell.loaded = value, True
        self._value = value
        return value

    async def initial_value(self) -> Any:
        """The stored value (loading it if needed), else the default."""
        if not self._cell.loaded:
            await self.load()
        return self._cell.value

    async def aget(self, default: Any = MISSING) -> Any:
        """`get`, loading the stored value first if that has not happened yet."""
        if not self._cell.loaded:
            await self.load()
        return self.get(default)

    # -- writing ---------------------------------------------------------------------------
    async def set(self, value: Any) -> None:
        """Validate, write to the store, then store and notify (a notified value is durable)."""
        value = self._check(value)
        data = _encode(self, value)
        cell = self._cell
        async with cell.lock:
            await self._io.set(self.key, data)
            cell.value, cell.loaded = value, True
            self._value = value
            self.version += 1
        if self._subscribers:
            self._notify(value)

    def set_nowait(self, value: Any) -> None:
        raise TypeError(f"persistent unit {self.name!r} writes to its store: use `await unit.set(value)`")

    async def delete(self) -> bool:
        """Remove the stored value; the unit reads as empty (or its default) afterwards."""
        async with self._cell.lock:
            existed = await self._io.delete(self.key)
            self._cell.value, self._cell.loaded = self.default, True
            self._value = self.default
        return existed

    def clone(self, name: str | None = None) -> PersistentUnit:
        """A copy for a run: same store, key and shared value, its own subscribers."""
        twin = object.__new__(PersistentUnit)
        DataUnit.__init__(twin, name or self.name, self.type, default=self.default)
        twin.store, twin.key, twin.encryptor, twin._io = self.store, self.key, self.encryptor, self._io
        twin._cell = self._cell
        if self._cell.loaded:
            twin._value = self._cell.value
        return twin

    def __repr__(self) -> str:
        shown = self._cell.value if self._cell.loaded else "<not loaded>"
        return f"PersistentUnit({self.name!r}, key={self.key!r}, value={shown!r})"


class _Log:
    """What a stream unit and its copies share: the item count and who waits for new items."""

    __slots__ = ("closed", "count", "last", "lock", "waiters")

    def __init__(self) -> None:
        self.count: int | None = None  # None until loaded
        self.last: Any = MISSING
        self.closed = False
        self.lock = asyncio.Lock()
        self.waiters: ParkingLot[None] = ParkingLot()

    def wake(self) -> None:
        self.waiters.unpark_all()


class PersistentStreamUnit(_StoredUnit):
    """Every item, appended durably under `key`, replayable in order after a restart.

    Layout in the store: `KEY/count`, `KEY/items/000000000000`..., `KEY/readers/NAME`. The
    item is written before the count, so a crash between the two leaves the append
    unacknowledged and the next append takes its place. One process appends to a key at a time.
    Readers (`unit.reader(name)`) resume from their committed position.
    """

    kind = "persistent_stream"
    __slots__ = ("_log",)

    def _reset_state(self) -> None:
        self._log = _Log()

    def _item_key(self, index: int) -> str:
        return f"{self.key}/items/{index:012d}"

    # -- loading and reading -------------------------------------------------------------
    async def load(self) -> int:
        """Read how many items are stored (and the latest one); returns the count."""
        log = self._log
        raw = await self._io.get(f"{self.key}/count")
        log.count = int(raw) if raw is not None else 0
        if log.count:
            last = await self._io.get(self._item_key(log.count - 1))
            if last is not None:
                log.last = self._check(_decode(self, self._item_key(log.count - 1), last))
                self._value = log.last
        return log.count

    async def length(self) -> int:
        if self._log.count is None:
            await self.load()
        return self._log.count or 0

    def get(self, default: Any = MISSING) -> Any:
        """The latest item (after `load()` or an append)."""
        last = self._log.last
        if last is MISSING:
            if default is not MISSING:
                return default
            if self.default is not MISSING:
                return self.default
            raise LookupError(f"data unit {self.name!r} has no items yet (or was not loaded)")
        return last

    @property
    def has_value(self) -> bool:
        return self._log.last is not MISSING

    async def items(self, start: int = 0, stop: int | None = None) -> list[Any]:
        """Stored items `start` to `stop` (exclusive), in order."""
        return [item async for item in self.replay(start, stop)]

    async def replay(self, start: int = 0, stop: int | None = None, *, batch: int = 200) -> AsyncIterator[Any]:
        """Yield stored items from `start`, in order, up to the count when called (or `stop`)."""
        end = await self.length() if stop is None else min(stop, await self.length())
        for first in range(start, end, batch):
            keys = [self._item_key(i) for i in range(first, min(first + batch, end))]
            found = await self._io.get_many(keys)
            for key in keys:
                if key not in found:
                    raise LookupError(f"persistent stream unit {self.name!r}: item {key!r} is missing from the store")
                yield self._check(_decode(self, key, found[key]))

    async def _item(self, index: int) -> Any:
        key = self._item_key(index)
        raw = await self._io.get(key)
        if raw is None:
            raise LookupError(f"persistent stream unit {self.name!r}: item {key!r} is missing from the store")
        return self._check(_decode(self, key, raw))

    # -- appending -----------------------------------------------------------------------
    async def append(self, item: Any) -> int:
        """Store `item` durably after the others; returns its index."""
        item = self._check(item)
        data = _encode(self, item)
        log = self._log
        async with log.lock:
            if log.count is None:
                await self.load()
            index = log.count or 0
            await self._io.set(self._item_key(index), data)
            # The count is the commit point: the append is acknowledged once it is written.
            await self._io.set(f"{self.key}/count", str(index + 1).encode())
            log.count = index + 1
            log.last = item
            self._value = item
            self.version += 1
        log.wake()
        if self._subscribers:
            self._notify(item)
        return index

    async def set(self, value: Any) -> None:
        await self.append(value)

    def set_nowait(self, value: Any) -> None:
        raise TypeError(f"persistent stream unit {self.name!r} writes to its store: use `await unit.append(item)`")

    def close(self) -> None:
        """No more items in this process: readers stop once they reach the end."""
        self._log.closed = True
        self._log.wake()

    def reader(self, name: str = "default") -> StreamReader:
        """A consumer that resumes from the position it last committed under `name`."""
        return StreamReader(self, name)

    def clone(self, name: str | None = None) -> PersistentStreamUnit:
        twin = object.__new__(PersistentStreamUnit)
        DataUnit.__init__(twin, name or self.name, self.type, default=self.default)
        twin.store, twin.key, twin.encryptor, twin._io = self.store, self.key, self.encryptor, self._io
        twin._log = self._log
        if self._log.last is not MISSING:
            twin._value = self._log.last
        return twin

    def __repr__(self) -> str:
        return f"PersistentStreamUnit({self.name!r}, key={self.key!r}, items={self._log.count})"


class StreamReader:
    """Reads a persistent stream in order from a committed position (at-least-once delivery).

    `await reader.next()` (or `async for item in reader`) waits for items appended in this
    process; `await reader.commit()` records that everything read so far is done, so that after
    a restart reading resumes after it.
    """

    def __init__(self, unit: PersistentStreamUnit, name: str) -> None:
        self.unit = unit
        self.name = name
        self._key = f"{unit.key}/readers/{name}"
        self._position: int | None = None

    async def position(self) -> int:
        """The index of the next item this reader returns."""
        if self._position is None:
            raw = await self.unit._io.get(self._key)
            self._position = int(raw) if raw is not None else 0
        return self._position

    async def committed(self) -> int:
        """The position stored for this reader (what a restarted reader starts from)."""
        raw = await self.unit._io.get(self._key)
        return int(raw) if raw is not None else 0

    async def next(self) -> Any:
        position = await self.position()
        log = self.unit._log
        while position >= await self.unit.length():
            if log.closed:
                raise StopAsyncIteration
            await log.waiters.park()
        item = await self.unit._item(position)
        self._position = position + 1
        return item

    async def commit(self) -> int:
        """Store the current position; returns it."""
        position = await self.position()
        await self.unit._io.set(self._key, str(position).encode())
        return position

    async def seek(self, position: int) -> None:
        """Read from `position` next (commit to make it stick)."""
        if position < 0:
            raise ValueError(f"a stream position cannot be negative, got {position}")
        self._position = position

    def __aiter__(self) -> StreamReader:
        return self

    async def __anext__(self) -> Any:
        return await self.next()


PersistentKinds = (PersistentUnit, PersistentStreamUnit)


async def load_persistent(*targets: Any) -> int:
    """Load every persistent unit in the given units or workflows (nested ones too); returns how many."""
    units: list[DataUnit] = []
    for target in targets:
        _collect(target, units)
    await asyncio.gather(*(unit.load() for unit in units))  # type: ignore[attr-defined]
    return len(units)


def _collect(target: Any, found: list[DataUnit]) -> None:
    if isinstance(target, PersistentKinds):
        if all(target is not u for u in found):
            found.append(target)
        return
    groups: Iterable[Any] = ()
    steps = getattr(target, "steps", None)
    if isinstance(steps, dict):  # a workflow: its own units, then its steps'
        groups = [target.inputs.values(), target.outputs.values(), steps.values()]
    elif hasattr(target, "inputs") and hasattr(target, "outputs"):  # a step
        groups = [target.inputs.values(), target.outputs.values()]
    for group in groups:
        for item in group:
            _collect(item, found)


# YAML (`kind: persistent`) and UNIT_KINDS name these kinds once this module is imported.
UNIT_KINDS.setdefault(PersistentUnit.kind, PersistentUnit)
UNIT_KINDS.setdefault(PersistentStreamUnit.kind, PersistentStreamUnit)
