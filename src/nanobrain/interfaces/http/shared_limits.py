"""Per-principal rate limits kept in Redis, so that every replica draws on the same budget.

The same token bucket as `RateLimits` (`requests_per_second` flow in, up to `burst`), but its
state is a Redis hash changed by one Lua script: the refill, the take and the answer happen
atomically on the server, with the server's clock, however many replicas ask at once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("nanobrain.http.auth")

# KEYS[1]: the bucket; ARGV: rate (tokens/s), capacity. Returns "0" when a token was taken, else
# the seconds until one will be there (as text: Lua numbers would come back as integers).
TAKE = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
  at = now
end
if now > at then
  tokens = math.min(capacity, tokens + (now - at) * rate)
  at = now
end
local wait = 0
if tokens >= 1 - 1e-9 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.17g', at))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return string.format('%.6f', wait)
"""


class RedisRateLimits:
    """`requests_per_second` per principal with a `burst`, shared by every replica on `redis` (a client,
    or `RedisNodes` to spread the buckets over several servers; `prefix` is for a client).

    When Redis cannot be reached the request goes ahead (logged): an outage of the limiter
    should not take the API down with it.
    """

    def __init__(
        self, redis: Any, requests_per_second: float, burst: float | None = None, *, prefix: str = "nanobrain:"
    ) -> None:
        from .redis_nodes import RedisNodes

        if requests_per_second <= 0:
            raise ValueError(f"a rate limit needs a positive rate, got {requests_per_second}")
        self.nodes = redis if isinstance(redis, RedisNodes) else RedisNodes([redis], prefix=prefix)
        self.requests_per_second = requests_per_second
        self.burst = float(burst) if burst is not None else max(1.0, requests_per_second)
        if self.burst <= 0:
            raise ValueError(f"a rate limit needs a positive burst, got {burst}")
        self.prefix = self.nodes.prefix
        self._take = {id(client): client.register_script(TAKE) for client in self.nodes.clients}
        self._warned_at = 0.0

    async def acquire(self, who: str) -> float | None:
        """None when the request may go ahead (and is counted); else seconds to wait."""
        key = f"{self.prefix}ratelimit:{who}"
        take = self._take[id(self.nodes.for_key(key))]
        try:
            wait = float(await take(keys=[key], args=[self.requests_per_second, self.burst]))
        except Exception as exc:
            now = time.monotonic()
            if now - self._warned_at > 30:
                self._warned_at = now
                log.error("rate limits: Redis cannot be reached, requests are not limited meanwhile: %s", exc)
            return None
        return wait if wait > 0 else None
