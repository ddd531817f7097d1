"""The Redis servers that replicas share, and which of them holds a key.

One URL is one node. Several (`redis://a:6379/0,redis://b:6379/0`) spread the per-run and
per-key state over them with the partitioned store's consistent-hash ring, so every replica
finds a run's events (or a key's rate-limit bucket) on the same node; give the URLs in the same
order everywhere, since placement follows it. The first node also carries what is not per key:
the control channel, the replicas' heartbeats and the index of runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

DEFAULT_PREFIX = "nanobrain:"


def open_redis(url: str) -> tuple[Any, str]:
    """A `redis.asyncio` client for `url` and the key prefix (`?prefix=app:`, default `nanobrain:`);
    a clear error naming the URL (its password masked) when the URL is not one."""
    from ...infrastructure.data.kv import StoreError
    from ...infrastructure.security.redaction import mask_url, redact
    from ...optional import require

    redis = require("redis.asyncio", extra="storage", purpose="sharing runs and rate limits through Redis")
    try:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        prefix = query.pop("prefix", DEFAULT_PREFIX)
        return redis.Redis.from_url(urlunsplit(parts._replace(query=urlencode(query)))), prefix
    except ValueError as exc:
        raise StoreError(
            f"invalid Redis URL {mask_url(url)!r}: {redact(str(exc))}. Use redis://[USER:PASSWORD@]HOST:PORT/DB"
        ) from None


class RedisNodes:
    """`clients` (one per node, in the order every replica gives them) under one key `prefix`."""

    def __init__(self, clients: Sequence[Any], *, prefix: str = DEFAULT_PREFIX) -> None:
        from ...infrastructure.data.kv import RedisKeyValueStore, StoreError
        from ...infrastructure.data.partitioned import PartitionedStore

        if not clients:
            raise StoreError("sharing through Redis needs at least one Redis URL")
        self.clients = list(clients)
        self.prefix = prefix
        # The ring only places keys: the stores are views over the same clients.
        self.ring = PartitionedStore([RedisKeyValueStore(client, prefix=prefix) for client in self.clients])

    @classmethod
    def from_urls(cls, urls: str | Sequence[str]) -> RedisNodes:
        """Nodes for a comma-separated list (or a sequence) of URLs; `?prefix=` is read from the first."""
        from ...infrastructure.data.kv import StoreError

        listed = [u.strip() for u in (urls.split(",") if isinstance(urls, str) else urls) if u.strip()]
        if not listed:
            raise StoreError("no Redis URL given: use redis://HOST:PORT/DB (several separated by commas)")
        opened = [open_redis(url) for url in listed]
        return cls([client for client, _ in opened], prefix=opened[0][1])

    @property
    def primary(self) -> Any:
        return self.clients[0]

    def for_key(self, key: str) -> Any:
        """The client of the node that holds `key` (a run id, a rate-limit key)."""
        if len(self.clients) == 1:
            return self.clients[0]
        return self.clients[int(self.ring.node_for(key))]

    async def ping(self) -> None:
        await asyncio.gather(*(client.ping() for client in self.clients))

    async def aclose(self) -> None:
        await asyncio.gather(*(client.aclose() for client in self.clients))
