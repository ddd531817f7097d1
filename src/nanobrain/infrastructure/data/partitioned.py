"""A key-value store that spreads keys over several backends by consistent hashing.

Each backend owns many points ("virtual nodes") on a hash ring; a key belongs to the first
point at or after its own hash. Adding a backend takes over only the keys that fall just before
its points, about 1/N of them, so `rebalance()` moves little. The hash is blake2b, never
Python's `hash()`, which differs between processes.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from .kv import KeyValueStore, StoreError, check_item


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process and on every machine."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


class PartitionedStore(KeyValueStore):
    """Keys spread over `backends` (a list, named "0", "1", ..., or a mapping of name to store).

    Placement depends only on backend names and `virtual_nodes`, so every process that names
    the same backends finds the same keys. After adding or removing a backend, call
    `rebalance()` to move keys to their new owners; until then moved keys read as absent.
    """

    def __init__(
        self, backends: Iterable[KeyValueStore] | Mapping[str, KeyValueStore], *, virtual_nodes: int = 160
    ) -> None:
        if virtual_nodes < 1:
            raise StoreError(f"virtual_nodes must be at least 1, got {virtual_nodes}")
        self.virtual_nodes = virtual_nodes
        named = dict(backends) if isinstance(backends, Mapping) else {str(i): b for i, b in enumerate(backends)}
        if not named:
            raise StoreError("a partitioned store needs at least one backend")
        self.backends: dict[str, KeyValueStore] = {}
        self._points: list[int] = []
        self._owners: list[str] = []
        for name, backend in named.items():
            self.add_backend(name, backend)

    # -- the ring ------------------------------------------------------------------------
    def add_backend(self, name: str, backend: KeyValueStore) -> None:
        """Give `backend` its share of the ring (then `rebalance()` to move keys to it)."""
        if name in self.backends:
            raise StoreError(f"the partitioned store already has a backend named {name!r}")
        self.backends[name] = backend
        self._rebuild()

    def remove_backend(self, name: str) -> KeyValueStore:
        """Take `name` off the ring; its keys stay in it until `rebalance(extra=[removed])`."""
        if name not in self.backends:
            raise StoreError(f"no backend named {name!r} (backends: {', '.join(self.backends)})")
        if len(self.backends) == 1:
            raise StoreError("cannot remove the last backend of a partitioned store")
        backend = self.backends.pop(name)
        self._rebuild()
        return backend

    def _rebuild(self) -> None:
        ring = sorted(
            (stable_hash(f"{name}#{replica}"), name)
            for name in self.backends
            for replica in range(self.virtual_nodes)
        )
        self._points = [point for point, _ in ring]
        self._owners = [name for _, name in ring]

    def node_for(self, key: str) -> str:
        """The name of the backend that owns `key`."""
        index = bisect.bisect_left(self._points, stable_hash(key))
        return self._owners[index % len(self._owners)]

    def backend_for(self, key: str) -> KeyValueStore:
        return self.backends[self.node_for(key)]

    def _group(self, keys: Iterable[str]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for key in keys:
            groups.setdefault(self.node_for(key), []).append(key)
        return groups

    # -- the contract --------------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        return await self.backend_for(key).get(key)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        check_item(key, value, ttl)
        await self.backend_for(key).set(key, value, ttl=ttl)

    async def delete(self, key: str) -> bool:
        return await self.backend_for(key).delete(key)

    async def exists(self, key: str) -> bool:
        return await self.backend_for(key).exists(key)

    async def ttl(self, key: str) -> float | None:
        return await self.backend_for(key).ttl(key)

    async def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(keys))
        groups = self._group(wanted)
        parts = await asyncio.gather(*(self.backends[name].get_many(ks) for name, ks in groups.items()))
        found: dict[str, bytes] = {}
        for part in parts:
            found.update(part)
        return {k: found[k] for k in wanted if k in found}

    async def set_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        for key, value in items.items():
            check_item(key, value, ttl)
        groups = self._group(items)
        await asyncio.gather(
            *(self.backends[name].set_many({k: items[k] for k in ks}, ttl=ttl) for name, ks in groups.items())
        )

    async def delete_many(self, keys: Iterable[str]) -> int:
        groups = self._group(dict.fromkeys(keys))
        counts = await asyncio.gather(*(self.backends[name].delete_many(ks) for name, ks in groups.items()))
        return sum(counts)

    async def keys(self, prefix: str = "") -> list[str]:
        names = list(self.backends)
        listed = await asyncio.gather(*(self.backends[name].keys(prefix) for name in names))
        # Only keys on their owner count: a key not yet moved by `rebalance()` cannot be read either.
        return sorted(k for name, ks in zip(names, listed, strict=True) for k in ks if self.node_for(k) == name)

    # -- moving keys -----------------------------------------------------------------------
    async def rebalance(self, *, extra: Iterable[KeyValueStore] = (), batch: int = 500) -> int:
        """Move every key to the backend that owns it now; returns how many keys moved.

        `extra` are stores no longer on the ring (removed backends) whose keys should move too.
        A key's remaining time to live moves with it.
        """
        moved = 0
        sources: list[tuple[str | None, KeyValueStore]] = [(n, b) for n, b in self.backends.items()]
        sources += [(None, b) for b in extra]
        for name, source in sources:
            misplaced = [k for k in await source.keys() if self.node_for(k) != name]
            for start in range(0, len(misplaced), batch):
                chunk = misplaced[start : start + batch]
                values = await source.get_many(chunk)
                for key, value in values.items():
                    ttl = await source.ttl(key)
                    if ttl is None and not await source.exists(key):
                        continue  # expired since it was read: it must not come back without expiry
                    await self.backend_for(key).set(key, value, ttl=ttl)
                    moved += 1
                await source.delete_many(values)
        return moved

    async def aclose(self) -> None:
        await asyncio.gather(*(b.aclose() for b in self.backends.values()))

    def __repr__(self) -> str:
        inner: Any = ", ".join(f"{n}={b!r}" for n, b in self.backends.items())
        return f"PartitionedStore({inner})"
