"""The service registry: replicas and agents announce themselves and expire when they stop.

A service registers a `ServiceRecord` with a time to live; its `Registration` re-announces it
every `interval` (a heartbeat) until stopped, which deregisters it. A process that dies without
deregistering stops its heartbeat, so its record expires after the TTL. `discover(type, name)`
returns only live records. Backends share this contract: memory (tests, one process), SQL
(SQLite or PostgreSQL, `sql_registry.py`) and Redis (`redis_registry.py`); `open_registry(url)`
picks one by URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ...core.closing import AsyncClosing
from ...core.errors import NanoBrainError
from ..security.redaction import mask_url, redact

log = logging.getLogger("nanobrain.services")

REGISTRY_URL_ENV = "NANOBRAIN_REGISTRY_URL"
"""The environment variable that names the service registry (`redis://...`, `postgresql://...`)."""

REPLICA = "replica"
"""The type of a `nanobrain serve` process."""

A2A_AGENT = "a2a-agent"
"""The type of an A2A agent; its `url` is the agent's base URL (the card is under it)."""

Clock = Callable[[], float]


class ServiceRegistryError(NanoBrainError):
    """The service registry cannot be used as asked (bad URL, unreachable, a malformed record)."""


@dataclass(frozen=True)
class ServiceRecord:
    """One registered service. `expires_at` (wall-clock seconds) is set on the records `discover` returns."""

    type: str
    name: str
    url: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    expires_at: float | None = None

    def __post_init__(self) -> None:
        for attribute in ("type", "name", "id"):
            value = getattr(self, attribute)
            if not isinstance(value, str) or not value.strip():
                raise ServiceRegistryError(f"a service's {attribute} must be a non-empty string, not {value!r}")
        if not isinstance(self.url, str):
            raise ServiceRegistryError(f"service {self.name!r}: url must be a string, not {self.url!r}")

    def to_json(self) -> str:
        try:
            return json.dumps(
                {"id": self.id, "type": self.type, "name": self.name, "url": self.url, "metadata": dict(self.metadata)},
                separators=(",", ":"),
            )
        except (TypeError, ValueError) as exc:
            raise ServiceRegistryError(f"service {self.name!r}: metadata must be JSON ({exc})") from None

    @classmethod
    def from_json(cls, text: str | bytes, *, expires_at: float | None = None) -> ServiceRecord:
        data = json.loads(text)
        return cls(data["type"], data["name"], data["url"], data.get("metadata") or {}, data["id"], expires_at)

    def describe(self) -> dict[str, Any]:
        """The record for people: URLs masked, secret-looking values hidden."""
        return {
            "id": self.id,
            "type": self.type,
            "name": self.name,
            "url": mask_url(self.url),
            "metadata": json.loads(redact(json.dumps(dict(self.metadata)))),
            "expires_at": self.expires_at,
        }


def _sorted(records: list[ServiceRecord]) -> list[ServiceRecord]:
    return sorted(records, key=lambda r: (r.type, r.name, r.id))


def check_ttl(ttl: float) -> float:
    if not isinstance(ttl, int | float) or not ttl > 0:
        raise ServiceRegistryError(f"a service's ttl must be a positive number of seconds, not {ttl!r}")
    return float(ttl)


class ServiceRegistry(AsyncClosing, ABC):
    """The contract every backend keeps (the contract tests run it against each one)."""

    #: Where the registry lives, password masked (for messages).
    url: str = ""

    @abstractmethod
    async def announce(self, record: ServiceRecord, ttl: float) -> None:
        """Write `record`, live for `ttl` seconds from now (at registration and at each heartbeat)."""

    @abstractmethod
    async def deregister(self, service_id: str) -> bool:
        """Remove the service now; True when it was live."""

    @abstractmethod
    async def discover(self, type: str | None = None, name: str | None = None) -> list[ServiceRecord]:
        """The live services of `type` (every type when None), named `name` when given, sorted."""

    async def register(self, record: ServiceRecord, ttl: float, *, interval: float | None = None) -> Registration:
        """Announce `record` and keep it alive with a heartbeat every `interval` (default: a third of `ttl`)."""
        ttl = check_ttl(ttl)
        every = ttl / 3 if interval is None else interval
        if not 0 < every < ttl:
            raise ServiceRegistryError(f"the heartbeat interval ({every!r}s) must be positive and below ttl ({ttl}s)")
        await self.announce(record, ttl)
        return Registration(self, record, ttl, every)


class Registration(AsyncClosing):
    """A registered service and its heartbeat; `stop()` (or `aclose()`) deregisters it."""

    def __init__(self, registry: ServiceRegistry, record: ServiceRecord, ttl: float, interval: float) -> None:
        self.registry = registry
        self.record = record
        self.ttl = ttl
        self.interval = interval
        #: Heartbeats that failed in a row (the registry was unreachable); reset by a success.
        self.failures = 0
        self.task: asyncio.Task[None] = asyncio.create_task(self._beat(), name=f"heartbeat:{record.type}:{record.name}")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.registry.announce(self.record, self.ttl)
            except Exception as exc:
                # Keep beating: a registry that is back before the TTL ends never notices.
                self.failures += 1
                log.warning(
                    "heartbeat of %s %r to the service registry at %s failed (%d in a row): %s",
                    self.record.type, self.record.name, self.registry.url, self.failures, redact(str(exc)),
                )  # fmt: skip
            else:
                self.failures = 0

    @property
    def alive(self) -> bool:
        return not self.task.done()

    async def stop(self, *, deregister: bool = True) -> None:
        """End the heartbeat; deregister unless told not to (then the record expires after its TTL)."""
        if self.task.done() and not deregister:
            return
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if deregister:
            try:
                await self.registry.deregister(self.record.id)
            except Exception as exc:  # shutting down: the record will expire by itself
                log.warning(
                    "could not deregister %s %r from the service registry at %s (it expires in %gs): %s",
                    self.record.type, self.record.name, self.registry.url, self.ttl, redact(str(exc)),
                )  # fmt: skip

    async def aclose(self) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"Registration({self.record.type}:{self.record.name}, ttl={self.ttl:g}s, id={self.record.id})"


class MemoryServiceRegistry(ServiceRegistry):
    """Records in a dict: for tests and one process. Nothing is shared with other processes."""

    url = "memory://"

    def __init__(self, *, clock: Clock = time.time) -> None:
        self.clock = clock
        self._records: dict[str, ServiceRecord] = {}

    async def announce(self, record: ServiceRecord, ttl: float) -> None:
        record.to_json()  # the same checks as the shared backends
        self._records[record.id] = replace(record, expires_at=self.clock() + check_ttl(ttl))

    async def deregister(self, service_id: str) -> bool:
        record = self._records.pop(service_id, None)
        return record is not None and record.expires_at is not None and record.expires_at > self.clock()

    async def discover(self, type: str | None = None, name: str | None = None) -> list[ServiceRecord]:
        now = self.clock()
        for key in [k for k, r in self._records.items() if r.expires_at is not None and r.expires_at <= now]:
            del self._records[key]
        return _sorted(
            [r for r in self._records.values() if (type is None or r.type == type) and (name is None or r.name == name)]
        )

    def __repr__(self) -> str:
        return f"MemoryServiceRegistry({len(self._records)} records)"


def open_registry(url: str) -> ServiceRegistry:
    """A registry selected by URL.

    `redis://HOST:6379/0` (`?prefix=app:` sets the key prefix), `postgresql://USER@HOST/DB`
    (`?schema=name` keeps the table in a schema), `sqlite:///PATH`, or `memory://` (this process only).
    """
    if not isinstance(url, str) or "://" not in url:
        raise ServiceRegistryError(
            f"unsupported service registry URL {mask_url(str(url))!r}: use redis://HOST:PORT/DB, "
            "postgresql://USER@HOST/DB, sqlite:///PATH or memory://"
        )
    scheme = url.split(":", 1)[0].lower()
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if scheme in ("redis", "rediss", "unix"):
        from .redis_registry import RedisServiceRegistry

        prefix = query.pop("prefix", "nanobrain:")
        return RedisServiceRegistry(urlunsplit(parts._replace(query=urlencode(query))), prefix=prefix)
    if scheme == "memory":
        return MemoryServiceRegistry()
    if scheme.startswith(("sqlite", "postgresql", "postgres")):
        from ..data.database import Database
        from .sql_registry import SqlServiceRegistry

        if scheme.startswith("sqlite"):  # (urlunsplit would turn sqlite:///path into sqlite://path)
            return SqlServiceRegistry(Database(url), owns_database=True)
        schema = query.pop("schema", None)
        plain = urlunsplit(parts._replace(query=urlencode(query)))
        return SqlServiceRegistry(Database(plain, schema=schema), owns_database=True)
    raise ServiceRegistryError(
        f"unsupported service registry URL {mask_url(url)!r}: use redis://HOST:PORT/DB, "
        "postgresql://USER@HOST/DB, sqlite:///PATH or memory://"
    )
