"""Every NanoBrain exception in one place.

    NanoBrainError
    ├── UnitTypeError (TypeError) · StreamClosed · StepError · StepTimeout (TimeoutError) · ItemFailed
    ├── LinkFailed · CycleLimitExceeded · RunError
    ├── ExecutorError ── CapacityExceeded
    ├── ProblemsError ── WorkflowValidationError · ConfigError · ImportFileError (also HistoryError)
    ├── JournalError ── RunLocked · RunCorrupt
    ├── AgentError · NoAgent · UnknownAgent (KeyError)
    ├── ProtocolError ── InvalidInput (A2A and MCP)
    ├── ProviderError ── RateLimited · ProviderTimeout (TimeoutError) · ServerError · Unreachable
    │                    · BadRequest · AuthError · ModelNotConfigured
    ├── ParallelError ── CircuitOpen · NoProcessorAvailable · AttemptTimeout · DeadlineExceeded
    │                    · PoolClosed
    ├── InjectedFault
    ├── HistoryError ── SearchUnavailable · ExportError · SessionNotFound (LookupError) · SessionExpired
    ├── HomeError · StoreError · DatabaseError · UnitNotLoaded (LookupError) · ServiceRegistryError
    ├── EncryptionError ── DecryptionError
    ├── ApiKeyError ── ApiKeyNotFound (LookupError)
    ├── ObservabilityError · UnsafeBind
    ├── InvalidChatInput (ValueError)
    └── MissingExtra (ImportError): an optional package is missing; names the extra to install

Each name is imported from its defining module on first use, so `from nanobrain.errors import X`
loads only what defines X (several live next to optional dependencies).
"""

from __future__ import annotations

import importlib
from typing import Any

from .core.errors import (
    CapacityExceeded,
    ConfigError,
    CycleLimitExceeded,
    ExecutorError,
    ItemFailed,
    LinkFailed,
    NanoBrainError,
    ProblemsError,
    RunError,
    StepError,
    StepTimeout,
    StreamClosed,
    UnitTypeError,
    WorkflowValidationError,
)

_ELSEWHERE = {
    "nanobrain.core.journal": ("JournalError", "RunCorrupt", "RunLocked"),
    "nanobrain.agents.agent": ("AgentError",),
    "nanobrain.agents.registry": ("UnknownAgent",),
    "nanobrain.agents.delegation": ("NoAgent",),
    "nanobrain.protocols.errors": ("ProtocolError",),
    "nanobrain.protocols.a2a.parts": ("InvalidInput",),
    "nanobrain.llm.errors": (
        "AuthError",
        "BadRequest",
        "ModelNotConfigured",
        "ProviderError",
        "ProviderTimeout",
        "RateLimited",
        "ServerError",
        "Unreachable",
    ),
    "nanobrain.infrastructure.parallel.errors": (
        "AttemptTimeout",
        "CircuitOpen",
        "DeadlineExceeded",
        "NoProcessorAvailable",
        "ParallelError",
        "PoolClosed",
    ),
    "nanobrain.testing": ("InjectedFault",),
    "nanobrain.infrastructure.data.history": ("HistoryError", "SearchUnavailable"),
    "nanobrain.infrastructure.data.export": ("ExportError", "ImportFileError"),
    "nanobrain.infrastructure.data.sessions": ("SessionExpired", "SessionNotFound"),
    "nanobrain.infrastructure.data.home": ("HomeError",),
    "nanobrain.infrastructure.data.kv": ("StoreError",),
    "nanobrain.infrastructure.data.database": ("DatabaseError",),
    "nanobrain.infrastructure.data.persistent_units": ("UnitNotLoaded",),
    "nanobrain.infrastructure.services.registry": ("ServiceRegistryError",),
    "nanobrain.infrastructure.security.encryption": ("DecryptionError", "EncryptionError"),
    "nanobrain.infrastructure.security.api_keys": ("ApiKeyError", "ApiKeyNotFound"),
    "nanobrain.observability.setup": ("ObservabilityError",),
    "nanobrain.interfaces.http.serve": ("UnsafeBind",),
    "nanobrain.workflows.chat.app": ("InvalidChatInput",),
    "nanobrain.optional": ("MissingExtra",),
}
_MODULE_OF = {name: module for module, names in _ELSEWHERE.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'nanobrain.errors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))


# The lazy names are listed too, so `import *` and the docs see the whole tree.
__all__ = [
    "CapacityExceeded",
    "ConfigError",
    "CycleLimitExceeded",
    "ExecutorError",
    "ItemFailed",
    "LinkFailed",
    "NanoBrainError",
    "ProblemsError",
    "RunError",
    "StepError",
    "StepTimeout",
    "StreamClosed",
    "UnitTypeError",
    "WorkflowValidationError",
    *sorted(_MODULE_OF),
]
