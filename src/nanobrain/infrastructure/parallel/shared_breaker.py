"""Breaker state shared by every process on one Redis: a breaker opened in one replica is open in all.

A circuit breaker decides on every call, synchronously, so it cannot wait for Redis. This store
keeps a local mirror that the breaker reads (`open_until`), and keeps it current through Redis:
an opening is written as a key that expires when the cool-down ends (`{prefix}breaker:{name}`,
holding the wall-clock time it ends) and announced on `{prefix}breakers`; a process that starts
later reads the keys. Writes leave at once (a task sends them), so the breaker never waits.

Times are wall-clock (`time.time()`): the processes share no monotonic clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ..data.redis_client import listen_json

log = logging.getLogger("nanobrain.parallel.breaker")


class RedisBreakerState:
    """Which named breakers are open, and until when, across every process sharing `client`'s Redis."""

    def __init__(self, client: Any, *, prefix: str = "nanobrain:", now: Callable[[], float] = time.time) -> None:
        self.client = client
        self.prefix = prefix
        self._now = now
        self._open: dict[str, float] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Task[None] | None = None
        # Changes reach Redis in the order they happened here (an open, then its close).
        self._order = asyncio.Lock()

    @property
    def _channel(self) -> str:
        return f"{self.prefix}breakers"

    def _key(self, name: str) -> str:
        return f"{self.prefix}breaker:{name}"

    async def start(self) -> None:
        """Subscribe to changes, then read the breakers open now (so none is missed in between)."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        async for key in self.client.scan_iter(match=self._key("*")):
            until = await self.client.get(key)
            if until is not None:
                name = (key.decode() if isinstance(key, bytes) else key)[len(self._key("")) :]
                self._open[name] = max(self._open.get(name, 0.0), float(until))
        self._listener = asyncio.ensure_future(self._listen(pubsub))

    async def aclose(self) -> None:
        await asyncio.gather(*self._pending, return_exceptions=True)
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None

    # -- what a breaker calls (sync) ----------------------------------------------------------------
    def now(self) -> float:
        """The wall-clock time the openings are measured in."""
        return self._now()

    def open_until(self, name: str) -> float | None:
        """The wall-clock time until which `name` is open somewhere; None when it is not open."""
        until = self._open.get(name)
        if until is None:
            return None
        if until <= self._now():
            del self._open[name]
            return None
        return until

    def opened(self, name: str, cool_down: float) -> None:
        """`name` opened here: it is open everywhere for `cool_down` seconds (or until `closed`)."""
        until = self._now() + cool_down
        self._open[name] = until
        self._send(self._publish_open(name, until, cool_down))

    def closed(self, name: str) -> None:
        """`name` closed here (its probes succeeded): it is closed everywhere."""
        self._open.pop(name, None)
        self._send(self._publish_closed(name))

    # -- Redis ---------------------------------------------------------------------------------------
    def _send(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("shared breaker state: cannot write to Redis: %s", task.exception())

    async def _publish_open(self, name: str, until: float, cool_down: float) -> None:
        async with self._order:
            pipe = self.client.pipeline(transaction=False)
            pipe.set(self._key(name), repr(until), px=max(1, int(cool_down * 1000)))
            pipe.publish(self._channel, json.dumps({"name": name, "until": until}))
            await pipe.execute()

    async def _publish_closed(self, name: str) -> None:
        async with self._order:
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(self._key(name))
            pipe.publish(self._channel, json.dumps({"name": name, "until": None}))
            await pipe.execute()

    async def _listen(self, pubsub: Any) -> None:
        await listen_json(pubsub, self._changed, what="shared breaker state", log=log)

    def _changed(self, change: dict[str, Any]) -> None:
        name, until = str(change["name"]), change["until"]
        if until is None:
            self._open.pop(name, None)
        else:
            self._open[name] = max(self._open.get(name, 0.0), float(until))
