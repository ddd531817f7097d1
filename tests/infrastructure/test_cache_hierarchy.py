"""The cache levels: an LRU (bounds, TTL on a virtual clock) and L1 -> L2 Redis -> L3 SQL hierarchies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from nanobrain import VirtualClock
from nanobrain.infrastructure.cache import CacheHierarchy, CacheLevel, CacheLookup, LRUCache
from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.data.kv import (
    KeyValueStore,
    MemoryKeyValueStore,
    RedisKeyValueStore,
    SQLKeyValueStore,
    StoreError,
)


# -- L1 alone ------------------------------------------------------------------------------
async def test_lru_evicts_the_least_recently_used() -> None:
    cache = LRUCache(max_entries=3)
    for key in "abc":
        await cache.set(key, key.encode())
    assert await cache.get("a") == b"a"  # "a" is now the most recently used
    await cache.set("d", b"d")
    assert await cache.get("b") is None  # the least recently used went
    assert await cache.keys() == ["a", "c", "d"]
    assert cache.evictions == 1 and len(cache) == 3
    await cache.set("c", b"C")  # overwriting does not evict
    assert cache.evictions == 1 and await cache.get("c") == b"C"


async def test_lru_byte_bound() -> None:
    cache = LRUCache(max_entries=100, max_bytes=10)
    await cache.set("a", b"12345")
    await cache.set("b", b"12345")
    assert cache.size_bytes == 10
    await cache.set("c", b"1")
    assert await cache.keys() == ["b", "c"] and cache.size_bytes == 6
    await cache.set("huge", b"x" * 11)  # bigger than the whole cache: not kept, nothing evicted for it
    assert await cache.keys() == ["b", "c"]


async def test_lru_ttl_on_a_virtual_clock() -> None:
    clock = VirtualClock()
    cache = LRUCache(ttl=10, clock=clock)
    await cache.set("default", b"1")
    await cache.set("short", b"2", ttl=3)
    await cache.set("long", b"3", ttl=60)  # capped at the cache's ttl
    assert await cache.ttl("long") == 10
    await clock.advance(3)
    assert await cache.get("short") is None
    assert await cache.get("default") == b"1"
    await clock.advance(7)
    assert await cache.get("default") is None and await cache.get("long") is None
    assert len(cache) == 0 and cache.size_bytes == 0


def test_lru_bad_bounds() -> None:
    with pytest.raises(StoreError, match="max_entries must be at least 1"):
        LRUCache(max_entries=0)
    with pytest.raises(StoreError, match="ttl must be a positive"):
        LRUCache(ttl=0)


# -- the hierarchy on real stores --------------------------------------------------------------
@dataclass
class Stack:
    clock: VirtualClock
    l1: LRUCache
    l2: RedisKeyValueStore
    l3: SQLKeyValueStore
    cache: CacheHierarchy


@pytest.fixture
async def stack(redis_client: Any, redis_prefix: str, database: Database) -> AsyncIterator[Stack]:
    clock = VirtualClock(start=1_700_000_000.0)
    l1 = LRUCache(100, clock=clock)
    l2 = RedisKeyValueStore(redis_client, prefix=redis_prefix)
    l3 = SQLKeyValueStore(database, "cache", clock=clock)
    yield Stack(clock, l1, l2, l3, CacheHierarchy([l1, l2, l3], clock=clock))


async def test_write_through_then_served_by_each_level_and_promoted(stack: Stack) -> None:
    cache = stack.cache
    await cache.set("answer", b"42")
    for store in (stack.l1, stack.l2, stack.l3):
        assert await store.exists("answer")

    found = await cache.lookup("answer")
    assert (found.value, found.level, found.missed) == (b"42", "L1", ())

    stack.l1.clear()
    found = await cache.lookup("answer")
    assert (found.value, found.level, found.missed) == (b"42", "L2", ("L1",))
    assert stack.l1.get_nowait("answer") is not None  # promoted into L1

    stack.l1.clear()
    await stack.l2.delete("answer")
    found = await cache.lookup("answer")
    assert (found.value, found.level, found.missed) == (b"42", "L3", ("L1", "L2"))
    assert stack.l1.get_nowait("answer") is not None and await stack.l2.exists("answer")  # promoted into both
    assert (await cache.lookup("answer")).level == "L1"

    assert await cache.lookup("nothing") == CacheLookup(None, None, ("L1", "L2", "L3"))
    assert cache.stats() == {
        "L1": {"hits": 2, "misses": 3, "hit_rate": 0.4, "writes": 3, "errors": 0},
        "L2": {"hits": 1, "misses": 2, "hit_rate": 1 / 3, "writes": 2, "errors": 0},
        "L3": {"hits": 1, "misses": 1, "hit_rate": 0.5, "writes": 1, "errors": 0},
    }
    cache.reset_stats()
    assert cache.stats()["L1"]["hits"] == 0


async def test_expiry_is_carried_by_the_entry_across_levels(stack: Stack) -> None:
    cache = stack.cache
    await cache.set("k", b"v", ttl=100)
    await stack.clock.advance(60)
    stack.l1.clear()
    assert (await cache.lookup("k")).level == "L2"
    # Promotion keeps the 40 seconds that are left, not a fresh 100.
    assert await stack.l1.ttl("k") == pytest.approx(40)
    await stack.clock.advance(41)
    # Redis still holds the entry (its own clock is real time), but the entry itself has expired.
    assert await stack.l2.exists("k")
    assert await cache.lookup("k") == CacheLookup(None, None, ("L1", "L2", "L3"))


async def test_delete_removes_from_every_level(stack: Stack) -> None:
    await stack.cache.set("k", b"v")
    assert await stack.cache.delete("k") is True
    assert [await s.exists("k") for s in (stack.l1, stack.l2, stack.l3)] == [False, False, False]
    assert await stack.cache.delete("k") is False


# -- failure and configuration ---------------------------------------------------------------
class BrokenStore(MemoryKeyValueStore):
    async def get(self, key: str) -> bytes | None:
        raise ConnectionError("level down")

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        raise ConnectionError("level down")


async def test_a_failing_level_is_skipped_and_counted() -> None:
    l3: KeyValueStore = MemoryKeyValueStore()
    cache = CacheHierarchy([LRUCache(10), ("redis", BrokenStore()), ("sql", l3)])
    await cache.set("k", b"v")  # the broken level does not stop the others
    assert await l3.exists("k")
    cache.levels[0].store.clear()  # type: ignore[attr-defined]
    found = await cache.lookup("k")
    assert (found.value, found.level, found.missed) == (b"v", "sql", ("L1", "redis"))
    assert cache.stats()["redis"]["errors"] == 3  # one write, one read, one promotion


async def test_level_ttl_bounds_an_entry_at_that_level() -> None:
    clock = VirtualClock(start=10.0)
    fast, slow = MemoryKeyValueStore(clock=clock), MemoryKeyValueStore(clock=clock)
    cache = CacheHierarchy([CacheLevel("fast", fast, ttl=5), CacheLevel("slow", slow)], clock=clock)
    await cache.set("k", b"v")
    assert await fast.ttl("k") == 5 and await slow.ttl("k") is None
    await clock.advance(6)
    assert (await cache.lookup("k")).level == "slow"


def test_hierarchy_configuration_errors() -> None:
    with pytest.raises(StoreError, match="at least one level"):
        CacheHierarchy([])
    with pytest.raises(StoreError, match="names must differ"):
        CacheHierarchy([("a", MemoryKeyValueStore()), ("a", MemoryKeyValueStore())])
    with pytest.raises(KeyError, match="no cache level named 'L9'"):
        CacheHierarchy([MemoryKeyValueStore()]).level("L9")
