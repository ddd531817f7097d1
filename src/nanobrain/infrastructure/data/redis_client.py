"""One way to get a `redis.asyncio` client from a URL or a client the caller already has.

Every Redis user (the key-value store, the service registry, the server's run bus) needs the same three
things: the `storage` extra named when redis is missing, a bad URL refused with its password masked, and a
description of where the client connects that is safe to print.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ...optional import require
from ..security.redaction import mask_url, redact

USAGE = "Use redis://[USER:PASSWORD@]HOST:PORT/DB"


@dataclass(frozen=True)
class RedisConnection:
    """A client, where it connects (`url`, password masked) and whether closing it is ours to do."""

    client: Any  # typed loosely: redis-py's stubs allow str answers, but our clients never decode
    url: str
    owned: bool


def redis_connection(
    url_or_client: Any, *, purpose: str, error: type[Exception], bytes_only: bool = True
) -> RedisConnection:
    """Open a client for a URL (ours to close) or describe a client passed in (the caller's).

    A bad URL raises `error` naming it (masked); `bytes_only` refuses a client that decodes responses,
    for users that store bytes.
    """
    redis = require("redis.asyncio", extra="storage", purpose=purpose)
    if isinstance(url_or_client, str):
        url = mask_url(url_or_client)
        try:
            return RedisConnection(redis.Redis.from_url(url_or_client), url, owned=True)
        except ValueError as exc:  # a bad port, scheme or address
            raise error(f"invalid Redis URL {url!r}: {redact(str(exc))}. {USAGE}") from None
    kwargs = getattr(getattr(url_or_client, "connection_pool", None), "connection_kwargs", {})
    if bytes_only and kwargs.get("decode_responses"):
        raise error(f"{purpose} needs a Redis client without decode_responses (values are bytes)")
    url = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
    return RedisConnection(url_or_client, url, owned=False)


async def listen_json(
    pubsub: Any,
    handle: Callable[[dict[str, Any]], Awaitable[None] | None],
    *,
    what: str,
    log: logging.Logger,
    poll: float = 5.0,
) -> None:
    """Hand each JSON object published on `pubsub`'s channels to `handle`, until cancelled; then close it.

    A lost connection is logged and retried (a second later), and a malformed message is logged and
    skipped: one bad publisher or a Redis restart must not end the listener. `handle` raising
    KeyError, TypeError or ValueError counts as a malformed message.
    """
    try:
        while True:
            try:
                message = await pubsub.get_message(timeout=poll)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("%s: lost the Redis channel (%s); retrying", what, redact(str(exc)))
                await asyncio.sleep(1.0)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                result = handle(json.loads(message["data"]))
                if result is not None:
                    await result
            except (ValueError, KeyError, TypeError):
                log.warning("%s: ignored a malformed message", what)
    finally:
        await pubsub.aclose()
