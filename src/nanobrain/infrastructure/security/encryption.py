"""Encryption at rest: AES-256-GCM from `cryptography`, with key ids so that keys can rotate.

A sealed message is `b"NBE" | version | key id (8 bytes) | nonce (12 bytes) | ciphertext+tag`.
The header is authenticated along with the data, the nonce is random per message, and the key
id (a hash of the key, not the key) tells which key sealed it: decrypting with the wrong key is
a clear `DecryptionError`, never garbage. `Encryptor(keys=[new, old])` encrypts with the first
key and decrypts with any; `rotate()` re-encrypts stored values with the first.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from ...core.errors import NanoBrainError
from ..data.kv import KeyValueStore

KEY_ENV = "NANOBRAIN_ENCRYPTION_KEY"
KEY_FILE_ENV = "NANOBRAIN_ENCRYPTION_KEY_FILE"
MAGIC = b"NBE"
VERSION = 1
KEY_ID_SIZE = 8
NONCE_SIZE = 12
HEADER_SIZE = len(MAGIC) + 1 + KEY_ID_SIZE
_GENERATE_HINT = (
    'generate one with: python -c "from nanobrain.infrastructure.security import generate_key; print(generate_key())"'
)


class EncryptionError(NanoBrainError):
    """Keys are missing or malformed."""


class DecryptionError(EncryptionError):
    """Data cannot be decrypted: not encrypted by NanoBrain, sealed with another key, or tampered with."""


def generate_key() -> str:
    """A new random 256-bit key, URL-safe base64 (for NANOBRAIN_ENCRYPTION_KEY or a key file)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def parse_key(key: str | bytes, *, source: str = "key") -> bytes:
    """32 raw bytes from raw bytes or base64 text (URL-safe or standard, padding optional)."""
    if isinstance(key, bytes) and len(key) == 32:
        return key
    text = key.decode("ascii", "replace") if isinstance(key, bytes) else key
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    raw = b""
    for altchars in (b"-_", None):  # URL-safe, then standard; strictly (no silently skipped characters)
        try:
            raw = base64.b64decode(padded.encode("ascii"), altchars=altchars, validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            continue
        if len(raw) == 32:
            return raw
    detail = f"decodes to {len(raw)} bytes" if raw else "is not base64"
    raise EncryptionError(f"{source} must be a 256-bit key in base64 (32 bytes), but it {detail}; {_GENERATE_HINT}")


def key_id(key: bytes) -> bytes:
    """The 8-byte id stored with every message: identifies a key without revealing it."""
    return hashlib.sha256(b"nanobrain-key-id:" + key).digest()[:KEY_ID_SIZE]


class Encryptor:
    """Encrypts with the first key, decrypts with any of `keys` (raw 32 bytes or base64 text)."""

    def __init__(self, key: str | bytes | None = None, *, keys: Sequence[str | bytes] | None = None) -> None:
        from ...optional import require

        require("cryptography", extra="storage", purpose="encryption")
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        given = ([key] if key is not None else []) + list(keys or [])
        if not given:
            raise EncryptionError(f"an Encryptor needs at least one key; {_GENERATE_HINT}")
        self._ciphers: dict[bytes, AESGCM] = {}
        self._order: list[bytes] = []
        for i, item in enumerate(given):
            raw = parse_key(item, source=f"encryption key #{i + 1}")
            ident = key_id(raw)
            if ident not in self._ciphers:
                self._ciphers[ident] = AESGCM(raw)
                self._order.append(ident)
        self.primary_id = self._order[0]

    # -- where keys come from ----------------------------------------------------------
    @classmethod
    def from_env(cls, variable: str = KEY_ENV, *, environ: Mapping[str, str] | None = None) -> Encryptor:
        """Keys from `variable` (comma-separated, newest first), else from NANOBRAIN_ENCRYPTION_KEY_FILE's file."""
        env = os.environ if environ is None else environ
        value = env.get(variable, "").strip()
        if value:
            return cls(keys=[k for k in (p.strip() for p in value.split(",")) if k])
        path = env.get(KEY_FILE_ENV, "").strip()
        if path:
            return cls.from_key_file(path)
        raise EncryptionError(f"no encryption key: set {variable} (or {KEY_FILE_ENV} to a key file); {_GENERATE_HINT}")

    @classmethod
    def from_key_file(cls, path: str | os.PathLike[str]) -> Encryptor:
        """Keys from a file: one per line, newest first; blank lines and `#` comments are ignored."""
        file = Path(path).expanduser()
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise EncryptionError(f"cannot read the encryption key file {str(file)!r}: {exc.strerror or exc}") from None
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        keys = [line for line in lines if line]
        if not keys:
            raise EncryptionError(f"the encryption key file {str(file)!r} holds no key; {_GENERATE_HINT}")
        return cls(keys=[parse_key(k, source=f"the key on line {_line(lines, k)} of {str(file)!r}") for k in keys])

    @staticmethod
    def write_key_file(path: str | os.PathLike[str], keys: Iterable[str]) -> Path:
        """Write keys (newest first) to a file only its owner can read."""
        file = Path(path).expanduser()
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT: close it too
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{k}\n" for k in keys))
        return file

    # -- sealing -------------------------------------------------------------------------
    @property
    def key_ids(self) -> list[str]:
        """The ids of the configured keys, newest first, in hex."""
        return [ident.hex() for ident in self._order]

    def encrypt(self, data: bytes, associated_data: bytes = b"") -> bytes:
        """Seal `data` with the newest key. `associated_data` (say, the storage key) must match on decrypt."""
        header = MAGIC + bytes([VERSION]) + self.primary_id
        nonce = os.urandom(NONCE_SIZE)
        sealed = self._ciphers[self.primary_id].encrypt(nonce, bytes(data), header + associated_data)
        return header + nonce + sealed

    def sealed_with(self, data: bytes) -> str:
        """The hex id of the key that sealed `data` (checks only the header)."""
        return self._header(data).hex()

    def needs_rotation(self, data: bytes) -> bool:
        return self._header(data) != self.primary_id

    def _header(self, data: bytes) -> bytes:
        if len(data) < HEADER_SIZE + NONCE_SIZE + 16 or not data.startswith(MAGIC):
            raise DecryptionError(
                "data is not encrypted by NanoBrain (no NBE header): it was stored in plain, or is damaged"
            )
        if data[len(MAGIC)] != VERSION:
            raise DecryptionError(
                f"data was encrypted with format version {data[len(MAGIC)]}; this NanoBrain reads version {VERSION}"
            )
        return data[len(MAGIC) + 1 : HEADER_SIZE]

    def decrypt(self, data: bytes, associated_data: bytes = b"") -> bytes:
        from cryptography.exceptions import InvalidTag

        ident = self._header(data)
        cipher = self._ciphers.get(ident)
        if cipher is None:
            raise DecryptionError(
                f"the key id does not match: data was encrypted with key id {ident.hex()}, "
                f"but the configured keys have ids {', '.join(self.key_ids)} (wrong key, or the old key "
                "is missing after a rotation: list it after the new one)"
            )
        nonce = data[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE]
        try:
            return cipher.decrypt(nonce, data[HEADER_SIZE + NONCE_SIZE :], data[:HEADER_SIZE] + associated_data)
        except InvalidTag:
            raise DecryptionError(
                f"authentication failed for data sealed with key id {ident.hex()}: it was modified, "
                "or it belongs to another record"
            ) from None

    async def rotate(
        self,
        store: KeyValueStore,
        prefix: str = "",
        *,
        associated_data: Callable[[str], bytes] | None = None,
    ) -> int:
        """Re-encrypt with the newest key every value under `prefix` sealed with an older one.

        `store` holds sealed values (the store inside an EncryptedStore). Values keep their time
        to live. Returns how many were re-encrypted; running it again re-encrypts nothing.
        """
        aad = associated_data or (lambda _key: b"")
        rotated = 0
        for key in await store.keys(prefix):
            sealed = await store.get(key)
            if sealed is None or not self.needs_rotation(sealed):
                continue
            plain = self.decrypt(sealed, aad(key))
            ttl = await store.ttl(key)
            await store.set(key, self.encrypt(plain, aad(key)), ttl=ttl)
            rotated += 1
        return rotated

    def __repr__(self) -> str:
        return f"Encryptor(key_ids={self.key_ids})"


def _line(lines: list[str], key: str) -> int:
    return lines.index(key) + 1


class EncryptedStore(KeyValueStore):
    """A store whose values are sealed by `encryptor`; keys and expiry stay readable.

    Each value is bound to its key (as associated data), so a sealed value copied under
    another key fails to decrypt instead of being read as that key's value.
    """

    def __init__(self, inner: KeyValueStore, encryptor: Encryptor) -> None:
        self.inner = inner
        self.encryptor = encryptor

    @staticmethod
    def _aad(key: str) -> bytes:
        return key.encode("utf-8")

    async def get(self, key: str) -> bytes | None:
        sealed = await self.inner.get(key)
        return None if sealed is None else self.encryptor.decrypt(sealed, self._aad(key))

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        if not isinstance(value, bytes | bytearray | memoryview):
            await self.inner.set(key, value, ttl=ttl)  # the inner store raises its usual error
            return
        await self.inner.set(key, self.encryptor.encrypt(bytes(value), self._aad(key)), ttl=ttl)

    async def delete(self, key: str) -> bool:
        return await self.inner.delete(key)

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def keys(self, prefix: str = "") -> list[str]:
        return await self.inner.keys(prefix)

    async def ttl(self, key: str) -> float | None:
        return await self.inner.ttl(key)

    async def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        found = await self.inner.get_many(keys)
        return {k: self.encryptor.decrypt(v, self._aad(k)) for k, v in found.items()}

    async def set_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        sealed = {
            k: self.encryptor.encrypt(bytes(v), self._aad(k)) if isinstance(v, bytes | bytearray | memoryview) else v
            for k, v in items.items()
        }
        await self.inner.set_many(sealed, ttl=ttl)

    async def delete_many(self, keys: Iterable[str]) -> int:
        return await self.inner.delete_many(keys)

    async def rotate(self, prefix: str = "") -> int:
        """Re-encrypt this store's values under `prefix` with the newest key."""
        return await self.encryptor.rotate(self.inner, prefix, associated_data=self._aad)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __repr__(self) -> str:
        return f"EncryptedStore({self.inner!r})"
