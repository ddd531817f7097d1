"""The service registry in Redis: one key per service with Redis's own expiry, and sorted-set indexes.

`{prefix}service:{id}` holds the record and expires after the TTL (PX). `{prefix}services:all`
and `{prefix}services:type:{type}` index the ids, scored by expiry in milliseconds of the Redis
server's clock (scripts read `TIME`), so the hosts' clocks need not agree. Discovery drops
expired ids from an index and reads the records; a record whose key has expired is left out even
if its index entry is still there.
"""

from __future__ import annotations

from typing import Any

from ..security.redaction import mask_url, redact
from .registry import ServiceRecord, ServiceRegistry, ServiceRegistryError, _sorted, check_ttl

# KEYS: record, type index, all index. ARGV: record JSON, ttl (ms), id.
_ANNOUNCE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], expiry, ARGV[3])
redis.call('ZADD', KEYS[3], expiry, ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
return now
"""

# KEYS: an index. Returns the live ids with their expiry (ms), flattened.
_LIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
"""


class RedisServiceRegistry(ServiceRegistry):
    """Services in Redis under `prefix`, through `redis.asyncio` (a URL, or a client without decode_responses)."""

    def __init__(self, url_or_client: Any = "redis://127.0.0.1:6379/0", *, prefix: str = "nanobrain:") -> None:
        from ...optional import require

        redis = require("redis.asyncio", extra="storage", purpose="a Redis service registry")
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        self.client: Any
        if isinstance(url_or_client, str):
            self.url = mask_url(url_or_client)
            try:
                self.client = redis.Redis.from_url(url_or_client)
            except ValueError as exc:
                raise ServiceRegistryError(
                    f"invalid Redis URL {self.url!r}: {redact(str(exc))}. Use redis://[USER:PASSWORD@]HOST:PORT/DB"
                ) from None
            self._owns_client = True
        else:
            self.client = url_or_client
            kwargs = getattr(getattr(url_or_client, "connection_pool", None), "connection_kwargs", {})
            self.url = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
            self._owns_client = False
        self.prefix = prefix
        self._announce = self.client.register_script(_ANNOUNCE)
        self._live = self.client.register_script(_LIVE)
        self._failures = (RedisConnectionError, RedisTimeoutError, OSError, RedisError)

    def _record_key(self, service_id: str) -> str:
        return f"{self.prefix}service:{service_id}"

    def _index(self, type: str | None) -> str:
        return f"{self.prefix}services:all" if type is None else f"{self.prefix}services:type:{type}"

    def _fail(self, exc: BaseException) -> ServiceRegistryError:
        return ServiceRegistryError(f"the service registry at Redis {self.url} failed: {redact(str(exc))}")

    async def announce(self, record: ServiceRecord, ttl: float) -> None:
        millis = max(1, round(check_ttl(ttl) * 1000))
        keys = [self._record_key(record.id), self._index(record.type), self._index(None)]
        try:
            await self._announce(keys=keys, args=[record.to_json(), millis, record.id])
        except self._failures as exc:
            raise self._fail(exc) from exc

    async def deregister(self, service_id: str) -> bool:
        key = self._record_key(service_id)
        try:
            value = await self.client.get(key)
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.zrem(self._index(None), service_id)
                if value is not None:
                    pipe.zrem(self._index(ServiceRecord.from_json(value).type), service_id)
                deleted = (await pipe.execute())[0]
        except self._failures as exc:
            raise self._fail(exc) from exc
        return bool(deleted)

    async def discover(self, type: str | None = None, name: str | None = None) -> list[ServiceRecord]:
        try:
            flat = await self._live(keys=[self._index(type)])
            ids = [flat[i].decode() for i in range(0, len(flat), 2)]
            expiry = {ids[i // 2]: float(flat[i + 1]) / 1000 for i in range(0, len(flat), 2)}
            values = await self.client.mget([self._record_key(i) for i in ids]) if ids else []
        except self._failures as exc:
            raise self._fail(exc) from exc
        records = []
        for service_id, value in zip(ids, values, strict=True):
            if value is None:  # expired since the index was read
                continue
            record = ServiceRecord.from_json(value, expires_at=expiry[service_id])
            if (type is None or record.type == type) and (name is None or record.name == name):
                records.append(record)
        return _sorted(records)

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    def __repr__(self) -> str:
        return f"RedisServiceRegistry({self.url!r}, prefix={self.prefix!r})"
