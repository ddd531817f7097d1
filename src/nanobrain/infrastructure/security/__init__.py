"""Security: encryption at rest, and redaction of secrets from messages.

The names load on first use: the storage layer imports `redaction` from here, and `encryption`
builds on the storage layer's key-value stores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .encryption import DecryptionError, EncryptedStore, EncryptionError, Encryptor, generate_key
    from .redaction import mask_url, redact

__all__ = ["DecryptionError", "EncryptedStore", "EncryptionError", "Encryptor", "generate_key", "mask_url", "redact"]


def __getattr__(name: str) -> Any:
    if name in ("mask_url", "redact"):
        from . import redaction

        return getattr(redaction, name)
    if name in __all__:
        from . import encryption

        return getattr(encryption, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
