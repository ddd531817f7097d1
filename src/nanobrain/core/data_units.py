"""Data units: named, optionally typed slots that hold values and notify subscribers.

Subscribers are plain callables invoked after the value is stored, with no lock held, in
subscription order. A subscriber may set other units (or the same one) without deadlock.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

from .errors import StreamClosed
from .parking_lot import ParkingLot
from .typing_utils import make_validator

Subscriber = Callable[[Any], None]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


class DataUnit:
    """A slot holding the latest value (the "memory" kind)."""

    kind = "memory"
    #: Whether `set` does I/O and must be awaited (the engine then never calls `set_nowait`).
    awaits_set = False
    __slots__ = ("_queued", "_subscribers", "_validate", "_value", "default", "name", "type", "version")

    def __init__(self, name: str = "unit", type: Any = None, *, default: Any = MISSING) -> None:
        self.name = name
        self.type = type
        self.default = default
        self._validate = make_validator(name, type)
        # A shared empty tuple until someone subscribes: a run clones every unit of a workflow
        # and almost none of them ever gets a subscriber.
        self._subscribers: list[Subscriber] | tuple[()] = ()
        #: How many values were stored; lets observers tell a fresh value from an old one.
        self.version = 0
        self._value = MISSING
        self._queued: deque[Any] | None = None
        if default is not MISSING:
            self._value = self._check(default)

    # -- reading -----------------------------------------------------------------
    def get(self, default: Any = MISSING) -> Any:
        """The current value. Raises LookupError if the unit is empty and no default is given."""
        if self._value is MISSING:
            if default is not MISSING:
                return default
            raise LookupError(f"data unit {self.name!r} has no value yet")
        return self._value

    @property
    def has_value(self) -> bool:
        return self._value is not MISSING

    async def initial_value(self) -> Any:
        """What a run starts from when nothing is sent to this unit: its default (or MISSING).

        Units that keep their value elsewhere (persistent units) return what they stored.
        """
        return self.default

    # -- writing -----------------------------------------------------------------
    def _check(self, value: Any) -> Any:
        validate = self._validate
        return value if validate is None else validate(value)

    async def set(self, value: Any) -> None:
        """Validate, store and notify subscribers."""
        self.set_nowait(value)

    def set_nowait(self, value: Any) -> None:
        """Like `set` for kinds that never wait (memory, string)."""
        value = self._check(value)
        self._value = value
        self.version += 1
        if self._subscribers:
            self._notify(value)

    def _notify(self, value: Any) -> None:
        queued = self._queued
        if queued is not None:
            # A subscriber set this unit while being notified: deliver the new value after the
            # current one has reached every subscriber, so that each one sees values in order.
            queued.append(value)
            return
        self._queued = queued = deque()
        try:
            while True:
                # Iterate over a copy: a subscriber may subscribe or unsubscribe while being notified.
                for subscriber in tuple(self._subscribers):
                    subscriber(value)
                if not queued:
                    break
                value = queued.popleft()
        finally:
            self._queued = None

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber(value)` after every update; returns a function that unsubscribes."""
        subscribers = self._subscribers
        if not isinstance(subscribers, list):
            subscribers = self._subscribers = []
        subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in subscribers:
                subscribers.remove(subscriber)

        return unsubscribe

    def updates(self) -> AsyncIterator[Any]:
        """Iterate over every value set from now on, none skipped (unbounded buffer)."""
        return _UpdateIterator(self)

    def clone(self, name: str | None = None) -> DataUnit:
        """A fresh, empty unit with the same configuration (used to give each run its own state)."""
        cls = type(self)
        if (name is None or name == self.name) and cls in _PLAIN_KINDS:
            # Same name, same type: share the validator instead of building a new one.
            twin = object.__new__(cls)
            twin.name = self.name
            twin.type = self.type
            twin.default = self.default
            twin._validate = self._validate
            twin._subscribers = ()
            twin.version = 0
            twin._queued = None
            twin._value = MISSING if self.default is MISSING else self._check(self.default)
            return twin
        return cls(name or self.name, self.type, default=self.default)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, value={self._value!r})"


MemoryUnit = DataUnit


class _UpdateIterator:
    def __init__(self, unit: DataUnit) -> None:
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._unsubscribe = unit.subscribe(self._push)

    def _push(self, value: Any) -> None:
        self._items.append(value)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> _UpdateIterator:
        return self

    async def __anext__(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._items.popleft()

    async def aclose(self) -> None:
        self._unsubscribe()


class StringUnit(DataUnit):
    """Text with `append`."""

    kind = "string"
    __slots__ = ()

    def __init__(self, name: str = "unit", type: Any = str, *, default: Any = MISSING) -> None:
        super().__init__(name, str, default=default)

    async def append(self, text: str) -> None:
        self.set_nowait(self.get("") + self._check(text))


class StreamUnit(DataUnit):
    """Every item is delivered, in order, through a bounded buffer.

    `set` waits while the buffer is full (backpressure); waiting producers are served strictly in
    the order they called `set`. Consumers read with `await unit.next()` or `async for item in unit`.
    """

    kind = "stream"
    __slots__ = ("_blocked", "_buffer", "_closed", "_readers", "maxsize")

    def __init__(self, name: str = "unit", type: Any = None, *, default: Any = MISSING, maxsize: int = 64) -> None:
        if maxsize < 1:
            raise ValueError(f"stream unit {name!r}: maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self._buffer: deque[Any] = deque()
        #: Producers waiting for room, each with its item; readers waiting for an item.
        self._blocked: ParkingLot[Any] = ParkingLot()
        self._readers: ParkingLot[None] = ParkingLot()
        self._closed = False
        super().__init__(name, type, default=default)

    def clone(self, name: str | None = None) -> StreamUnit:
        return StreamUnit(name or self.name, self.type, default=self.default, maxsize=self.maxsize)

    def __len__(self) -> int:
        return len(self._buffer)

    async def set(self, value: Any) -> None:
        if self._closed:
            raise StreamClosed(f"stream unit {self.name!r} is closed")
        value = self._check(value)
        if len(self._buffer) < self.maxsize and not self._blocked:
            self._accept(value)
            return
        # A reader that makes room accepts the item for us, in line: a producer cancelled
        # while waiting leaves nothing behind.
        await self._blocked.park(value)

    def set_nowait(self, value: Any) -> None:
        if self._closed:
            raise StreamClosed(f"stream unit {self.name!r} is closed")
        if len(self._buffer) >= self.maxsize or self._blocked:
            raise asyncio.QueueFull(f"stream unit {self.name!r} is full ({self.maxsize} items)")
        self._accept(self._check(value))

    def _accept(self, value: Any) -> None:
        self._buffer.append(value)
        self._value = value
        self.version += 1
        if self._readers:
            self._readers.unpark()
        if self._subscribers:
            self._notify(value)

    async def next(self) -> Any:
        """Take the oldest item, waiting for one. Raises StopAsyncIteration once closed and drained."""
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            await self._readers.park()
        item = self._buffer.popleft()
        # Room was made: admit the longest-waiting producer.
        while self._blocked and len(self._buffer) < self.maxsize:
            self._accept(self._blocked.hand_over())
        return item

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        return await self.next()

    def close(self) -> None:
        """No more items; readers finish once the buffer is drained."""
        self._closed = True
        self._readers.unpark_all()


FileFormat = Literal["json", "text", "bytes"]


class FileUnit(DataUnit):
    """A value persisted in a file, written atomically (temp file, fsync, rename).

    The value on disk is loaded when the unit is created, so it survives a restart.
    """

    kind = "file"
    awaits_set = True
    __slots__ = ("format", "path")

    def __init__(
        self,
        name: str = "unit",
        type: Any = None,
        *,
        path: str | os.PathLike[str],
        format: FileFormat = "json",
        default: Any = MISSING,
    ) -> None:
        if format not in ("json", "text", "bytes"):
            raise ValueError(f"file unit {name!r}: format must be json, text or bytes, not {format!r}")
        self.path = Path(path)
        self.format = format
        super().__init__(name, type, default=default)
        if self.path.exists():
            try:
                stored = self._read()
            except ValueError as exc:  # bad JSON or bad UTF-8: say which unit and file
                raise ValueError(f"file unit {name!r}: cannot read {str(self.path)!r} as {format}: {exc}") from exc
            self._value = self._check(stored)

    def clone(self, name: str | None = None) -> FileUnit:
        return FileUnit(name or self.name, self.type, path=self.path, format=self.format, default=self.default)

    def _read(self) -> Any:
        if self.format == "bytes":
            return self.path.read_bytes()
        text = self.path.read_text(encoding="utf-8")
        return json.loads(text) if self.format == "json" else text

    def _encode(self, value: Any) -> bytes:
        if self.format == "bytes":
            if not isinstance(value, bytes | bytearray):
                raise TypeError(f"file unit {self.name!r} (bytes) cannot store {type(value).__name__}")
            return bytes(value)
        if self.format == "text":
            if not isinstance(value, str):
                raise TypeError(f"file unit {self.name!r} (text) cannot store {type(value).__name__}")
            return value.encode("utf-8")
        return json.dumps(value, ensure_ascii=False, default=_json_default).encode("utf-8")

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def set(self, value: Any) -> None:
        value = self._check(value)
        data = self._encode(value)
        # Writes to one file (from this unit or its per-run copies) are serialized, so the file
        # and the subscribers see the values in the order `set` was called.
        lock = _file_lock(self.path)
        async with lock:
            await asyncio.to_thread(self._write, data)
            self._value = value
            self.version += 1
        if self._subscribers:
            self._notify(value)

    def set_nowait(self, value: Any) -> None:
        value = self._check(value)
        self._write(self._encode(value))
        self._store_written(value)

    def _store_written(self, value: Any) -> None:
        self._value = value
        self.version += 1
        if self._subscribers:
            self._notify(value)


_FILE_LOCKS: weakref.WeakValueDictionary[tuple[str, int], asyncio.Lock] = weakref.WeakValueDictionary()


def _file_lock(path: Path) -> asyncio.Lock:
    """One lock per file and event loop, alive while someone holds it."""
    key = (str(path.resolve()), id(asyncio.get_running_loop()))
    lock = _FILE_LOCKS.get(key)
    if lock is None:
        lock = asyncio.Lock()
        _FILE_LOCKS[key] = lock
    return lock


def _json_default(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_PLAIN_KINDS = (DataUnit, StringUnit)

UNIT_KINDS: dict[str, type[DataUnit]] = {
    "memory": DataUnit,
    "string": StringUnit,
    "stream": StreamUnit,
    "file": FileUnit,
}
