"""Security: encryption at rest."""

from .encryption import DecryptionError, EncryptedStore, EncryptionError, Encryptor, generate_key

__all__ = ["DecryptionError", "EncryptedStore", "EncryptionError", "Encryptor", "generate_key"]
