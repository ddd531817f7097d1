"""A cache of several levels, fastest first: look up in order, promote on a hit, write through.

The usual stack is an in-process `LRUCache` (L1), Redis (L2) and SQL (L3), each a
`KeyValueStore`. Entries carry their absolute expiry, so a value promoted from a slower level
keeps the lifetime it was given instead of starting a new one. A level that fails (Redis down)
counts an error and is skipped: a cache outage slows calls down but does not break them.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...core.clock import WALL_CLOCK, Clock
from ...core.closing import AsyncClosing
from ..data.kv import KeyValueStore, StoreError
from .lru import LRUCache

log = logging.getLogger("nanobrain.cache")

_VERSION = 1
_HEADER = struct.Struct(">Bd")  # format version, absolute expiry (0: never)


def _seal(value: bytes, expires: float) -> bytes:
    return _HEADER.pack(_VERSION, expires) + value


def _open(raw: bytes) -> tuple[float, bytes] | None:
    if len(raw) < _HEADER.size or raw[0] != _VERSION:
        return None
    return _HEADER.unpack_from(raw)[1], raw[_HEADER.size :]


@dataclass
class CacheLevel:
    """One level: a store, a name for statistics and events, and the longest time an entry stays."""

    name: str
    store: KeyValueStore
    ttl: float | None = None
    hits: int = 0
    misses: int = 0
    writes: int = 0
    errors: int = 0
    sync: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        # The in-process level is read without a coroutine: it is the hot path.
        self.sync = isinstance(self.store, LRUCache)

    def stats(self) -> dict[str, Any]:
        lookups = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hits / lookups if lookups else 0.0,
            "writes": self.writes,
            "errors": self.errors,
        }


@dataclass(frozen=True, slots=True)
class CacheLookup:
    """What a lookup found: the value, the level that had it, the levels that did not."""

    value: bytes | None
    level: str | None
    missed: tuple[str, ...]

    @property
    def hit(self) -> bool:
        return self.level is not None


LevelSpec = KeyValueStore | CacheLevel | tuple[str, KeyValueStore]


class CacheHierarchy(AsyncClosing):
    """Levels fastest first. `levels` are stores (named L1, L2, ...), `(name, store)` pairs or CacheLevels.

    `ttl` is the default lifetime of an entry (None: until evicted). `clock` is wall time by
    default, since slower levels are shared between processes. The hierarchy owns its levels:
    `aclose()` closes them (a store closes only connections it opened itself).
    """

    def __init__(self, levels: Sequence[LevelSpec], *, ttl: float | None = None, clock: Clock = WALL_CLOCK) -> None:
        if not levels:
            raise StoreError("a cache hierarchy needs at least one level")
        if ttl is not None and not ttl > 0:
            raise StoreError(f"ttl must be a positive number of seconds, got {ttl!r}")
        self.levels: list[CacheLevel] = []
        for i, spec in enumerate(levels, start=1):
            if isinstance(spec, CacheLevel):
                level = spec
            elif isinstance(spec, tuple):
                level = CacheLevel(spec[0], spec[1])
            else:
                level = CacheLevel(f"L{i}", spec)
            self.levels.append(level)
        names = [level.name for level in self.levels]
        if len(set(names)) != len(names):
            raise StoreError(f"cache level names must differ, got {names}")
        self.ttl = ttl
        self.clock = clock

    def level(self, name: str) -> CacheLevel:
        for level in self.levels:
            if level.name == name:
                return level
        raise KeyError(f"no cache level named {name!r} (levels: {', '.join(lv.name for lv in self.levels)})")

    # -- reading -------------------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        return (await self.lookup(key)).value

    async def lookup(self, key: str) -> CacheLookup:
        """Find `key` in the fastest level that has it and copy it into the faster ones."""
        missed: list[str] = []
        for index, level in enumerate(self.levels):
            try:
                raw = level.store.get_nowait(key) if level.sync else await level.store.get(key)  # type: ignore[attr-defined]
            except Exception as exc:
                level.errors += 1
                log.warning("cache level %s failed to read %r: %s", level.name, key, exc)
                raw = None
            if raw is not None:
                opened = _open(raw)
                if opened is not None and (opened[0] == 0 or opened[0] > self.clock.now()):
                    level.hits += 1
                    if index:
                        await self._write(self.levels[:index], key, raw, opened[0])
                    return CacheLookup(opened[1], level.name, tuple(missed))
            level.misses += 1
            missed.append(level.name)
        return CacheLookup(None, None, tuple(missed))

    # -- writing -------------------------------------------------------------------------
    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Write to every level (write-through)."""
        if not isinstance(value, bytes | bytearray | memoryview):
            raise StoreError(f"cache value for key {key!r} must be bytes, not {type(value).__name__}")
        lifetime = self.ttl if ttl is None else ttl
        if lifetime is not None and not lifetime > 0:
            raise StoreError(f"ttl for key {key!r} must be a positive number of seconds, not {lifetime!r}")
        expires = 0.0 if lifetime is None else self.clock.now() + lifetime
        await self._write(self.levels, key, _seal(bytes(value), expires), expires)

    async def _write(self, levels: Sequence[CacheLevel], key: str, raw: bytes, expires: float) -> None:
        now = self.clock.now()
        remaining = None if expires == 0 else expires - now
        if remaining is not None and remaining <= 0:
            return
        pending = []
        for level in levels:
            ttl = remaining if level.ttl is None else (level.ttl if remaining is None else min(level.ttl, remaining))
            if level.sync:
                level.store.set_nowait(key, raw, ttl=ttl)  # type: ignore[attr-defined]
                level.writes += 1
            else:
                pending.append((level, level.store.set(key, raw, ttl=ttl)))
        if not pending:
            return
        results = await asyncio.gather(*(write for _, write in pending), return_exceptions=True)
        for (level, _), result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                level.errors += 1
                log.warning("cache level %s failed to write %r: %s", level.name, key, result)
            else:
                level.writes += 1

    async def delete(self, key: str) -> bool:
        """Remove `key` from every level; True when any level had it."""
        results = await asyncio.gather(*(level.store.delete(key) for level in self.levels))
        return any(results)

    # -- statistics ----------------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, Any]]:
        """Hits, misses, hit rate, writes and errors per level, fastest first."""
        return {level.name: level.stats() for level in self.levels}

    def reset_stats(self) -> None:
        for level in self.levels:
            level.hits = level.misses = level.writes = level.errors = 0

    async def aclose(self) -> None:
        await asyncio.gather(*(level.store.aclose() for level in self.levels))

    def __repr__(self) -> str:
        return f"CacheHierarchy({', '.join(f'{lv.name}={lv.store!r}' for lv in self.levels)})"
