"""The service registry: replicas and A2A agents register with a heartbeat, expire when they stop,
and are discovered by type (Redis, PostgreSQL or SQLite, or memory in one process)."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "A2A_AGENT": "registry",
    "REGISTRY_URL_ENV": "registry",
    "REPLICA": "registry",
    "MemoryServiceRegistry": "registry",
    "Registration": "registry",
    "ServiceRecord": "registry",
    "ServiceRegistry": "registry",
    "ServiceRegistryError": "registry",
    "open_registry": "registry",
    "SqlServiceRegistry": "sql_registry",
    "RedisServiceRegistry": "redis_registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Lazy: the backends import SQLAlchemy or redis only when used.
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
