"""The in-process cache level: least-recently-used eviction, bounded by entries, bytes and age."""

from __future__ import annotations

from collections import OrderedDict

from ...core.clock import WALL_CLOCK, Clock
from ..data.kv import KeyValueStore, StoreError, check_item


class LRUCache(KeyValueStore):
    """Holds at most `max_entries` values (and `max_bytes` bytes, when given) for at most `ttl` seconds.

    Reading an entry makes it the most recently used; writing past a bound evicts the least
    recently used. A per-item ttl shorter than `ttl` wins. `clock` is wall time by default, like the
    other cache levels; tests pass a `VirtualClock`. The `*_nowait` methods skip the coroutine
    for callers on a hot path.
    """

    def __init__(
        self,
        max_entries: int = 1024,
        *,
        max_bytes: int | None = None,
        ttl: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if max_entries < 1:
            raise StoreError(f"max_entries must be at least 1, got {max_entries}")
        if max_bytes is not None and max_bytes < 1:
            raise StoreError(f"max_bytes must be at least 1, got {max_bytes}")
        if ttl is not None and not ttl > 0:
            raise StoreError(f"ttl must be a positive number of seconds, got {ttl!r}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.default_ttl = ttl
        self.clock: Clock = clock or WALL_CLOCK
        self._entries: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._bytes = 0
        #: How many entries were pushed out by a bound (not counting expiry).
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get_nowait(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires = entry[1]
        if expires is not None and expires <= self.clock.now():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def set_nowait(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        check_item(key, value, ttl)
        value = bytes(value)
        limit = self.default_ttl if ttl is None else (ttl if self.default_ttl is None else min(ttl, self.default_ttl))
        if self.max_bytes is not None and len(value) > self.max_bytes:
            self._drop(key)  # larger than the whole cache: keep nothing rather than evict everything
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (value, None if limit is None else self.clock.now() + limit)
        self._bytes += len(value)
        while len(self._entries) > self.max_entries or (self.max_bytes is not None and self._bytes > self.max_bytes):
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.evictions += 1

    def _alive(self, key: str) -> tuple[bytes, float | None] | None:
        # Like get_nowait, without counting as a use (listing keys must not reorder them).
        entry = self._entries.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= self.clock.now():
            self._drop(key)
            return None
        return entry

    def _drop(self, key: str) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._bytes -= len(entry[0])
        return True

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    async def get(self, key: str) -> bytes | None:
        return self.get_nowait(key)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self.set_nowait(key, value, ttl=ttl)

    async def delete(self, key: str) -> bool:
        present = self._alive(key) is not None
        self._drop(key)
        return present

    async def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in list(self._entries) if k.startswith(prefix) and self._alive(k) is not None)

    async def ttl(self, key: str) -> float | None:
        entry = self._alive(key)
        return None if entry is None or entry[1] is None else entry[1] - self.clock.now()

    def __repr__(self) -> str:
        return f"LRUCache({len(self._entries)}/{self.max_entries} entries, {self._bytes} bytes)"
