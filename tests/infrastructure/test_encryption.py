"""Encryption at rest: AES-GCM sealing, clear errors for wrong keys and tampering, key sources, rotation."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from nanobrain import VirtualClock
from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.data.kv import KeyValueStore, MemoryKeyValueStore, RedisKeyValueStore, SQLKeyValueStore
from nanobrain.infrastructure.security import (
    DecryptionError,
    EncryptedStore,
    EncryptionError,
    Encryptor,
    generate_key,
)
from nanobrain.infrastructure.security.encryption import HEADER_SIZE, key_id

SECRET = b"the launch code is 0000"


def test_round_trip_with_a_fresh_nonce_each_time() -> None:
    enc = Encryptor(generate_key())
    one, two = enc.encrypt(SECRET), enc.encrypt(SECRET)
    assert one != two  # random 96-bit nonce per message
    assert SECRET not in one
    assert enc.decrypt(one) == enc.decrypt(two) == SECRET
    assert one[:4] == b"NBE\x01" and one[4:HEADER_SIZE] == enc.primary_id
    assert len(one) == HEADER_SIZE + 12 + len(SECRET) + 16
    assert enc.decrypt(enc.encrypt(b"")) == b""


def test_the_wrong_key_is_a_clear_error_never_garbage() -> None:
    right, wrong = Encryptor(generate_key()), Encryptor(generate_key())
    sealed = right.encrypt(SECRET)
    expected = f"key id does not match: data was encrypted with key id {right.key_ids[0]}"
    with pytest.raises(DecryptionError, match=expected):
        wrong.decrypt(sealed)


def test_tampering_and_foreign_data_are_clear_errors() -> None:
    enc = Encryptor(generate_key())
    sealed = bytearray(enc.encrypt(SECRET))
    sealed[-1] ^= 1
    with pytest.raises(DecryptionError, match=r"authentication failed .* it was modified"):
        enc.decrypt(bytes(sealed))
    with pytest.raises(DecryptionError, match="not encrypted by NanoBrain"):
        enc.decrypt(b"plain text that was never sealed, long enough to have a header")
    future = bytearray(enc.encrypt(SECRET))
    future[3] = 9
    with pytest.raises(DecryptionError, match="format version 9"):
        enc.decrypt(bytes(future))
    bound = enc.encrypt(SECRET, associated_data=b"record-1")
    assert enc.decrypt(bound, associated_data=b"record-1") == SECRET
    with pytest.raises(DecryptionError, match="authentication failed"):
        enc.decrypt(bound, associated_data=b"record-2")


def test_keys_in_any_base64_spelling_and_bad_keys_explained() -> None:
    raw = os.urandom(32)
    spellings = [
        raw,
        base64.urlsafe_b64encode(raw).decode(),
        base64.standard_b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]
    ids = {Encryptor(s).primary_id for s in spellings}
    assert ids == {key_id(raw)}
    assert len(base64.urlsafe_b64decode(generate_key())) == 32
    with pytest.raises(EncryptionError, match=r"256-bit key in base64 \(32 bytes\), but it decodes to 16 bytes"):
        Encryptor(base64.b64encode(os.urandom(16)).decode())
    with pytest.raises(EncryptionError, match="is not base64; generate one with"):
        Encryptor("not a key!")
    with pytest.raises(EncryptionError, match="needs at least one key"):
        Encryptor()


def test_keys_from_the_environment() -> None:
    new, old = generate_key(), generate_key()
    enc = Encryptor.from_env(environ={"NANOBRAIN_ENCRYPTION_KEY": f"{new}, {old}"})
    assert enc.key_ids == [key_id(base64.urlsafe_b64decode(k)).hex() for k in (new, old)]
    with pytest.raises(EncryptionError, match=r"no encryption key: set NANOBRAIN_ENCRYPTION_KEY .* generate_key"):
        Encryptor.from_env(environ={})
    with pytest.raises(EncryptionError, match="encryption key #1 must be a 256-bit key"):
        Encryptor.from_env(environ={"NANOBRAIN_ENCRYPTION_KEY": "c2hvcnQ="})


def test_keys_from_a_file(tmp_path: Path) -> None:
    new, old = generate_key(), generate_key()
    path = Encryptor.write_key_file(tmp_path / "keys" / "nanobrain.key", [new, old])
    assert path.stat().st_mode & 0o077 == 0  # only the owner may read it
    path.write_text(f"# rotated in May\n{new}\n\n{old}  # previous\n")
    enc = Encryptor.from_key_file(path)
    assert enc.primary_id == Encryptor(new).primary_id and len(enc.key_ids) == 2
    via_env = Encryptor.from_env(environ={"NANOBRAIN_ENCRYPTION_KEY_FILE": str(path)})
    assert via_env.key_ids == enc.key_ids
    with pytest.raises(EncryptionError, match=r"cannot read the encryption key file .*missing\.key"):
        Encryptor.from_key_file(tmp_path / "missing.key")
    (tmp_path / "empty.key").write_text("# nothing yet\n")
    with pytest.raises(EncryptionError, match="holds no key"):
        Encryptor.from_key_file(tmp_path / "empty.key")
    (tmp_path / "bad.key").write_text(f"{new}\nshort\n")
    with pytest.raises(EncryptionError, match=r"the key on line 2 of .*bad\.key"):
        Encryptor.from_key_file(tmp_path / "bad.key")


def test_two_keys_decrypt_either_and_encrypt_with_the_first() -> None:
    old_key, new_key = generate_key(), generate_key()
    old, both = Encryptor(old_key), Encryptor(keys=[new_key, old_key])
    assert both.decrypt(old.encrypt(SECRET)) == SECRET
    sealed = both.encrypt(SECRET)
    assert both.sealed_with(sealed) == Encryptor(new_key).key_ids[0]
    with pytest.raises(DecryptionError, match="key id does not match"):
        old.decrypt(sealed)


# -- stores --------------------------------------------------------------------------------
async def _rotation_on(inner: KeyValueStore) -> None:
    old_key, new_key = generate_key(), generate_key()
    before = EncryptedStore(inner, Encryptor(old_key))
    await before.set_many({"doc:1": b"alpha", "doc:2": b"beta"})
    await before.set("doc:3", b"gamma", ttl=500)
    await before.set("other", b"outside the prefix")
    assert SECRET not in (await inner.get("doc:1") or b"") and await inner.get("doc:1") != b"alpha"

    after = EncryptedStore(inner, Encryptor(keys=[new_key, old_key]))
    assert await after.get_many(["doc:1", "doc:2"]) == {"doc:1": b"alpha", "doc:2": b"beta"}
    assert await after.rotate("doc:") == 3
    assert await after.rotate("doc:") == 0  # nothing left under the old key

    only_new = EncryptedStore(inner, Encryptor(new_key))
    assert [await only_new.get(k) for k in ("doc:1", "doc:2", "doc:3")] == [b"alpha", b"beta", b"gamma"]
    remaining = await inner.ttl("doc:3")
    assert remaining is not None and 0 < remaining <= 500  # rotation kept the expiry
    with pytest.raises(DecryptionError, match="key id does not match"):
        await before.get("doc:1")
    with pytest.raises(DecryptionError, match="key id does not match"):
        await only_new.get("other")  # outside the prefix: still under the old key


async def test_encrypted_store_and_rotation_on_sql(database: Database) -> None:
    await _rotation_on(SQLKeyValueStore(database, "secrets"))


async def test_encrypted_store_and_rotation_on_redis(redis_client: Any, redis_prefix: str) -> None:
    await _rotation_on(RedisKeyValueStore(redis_client, prefix=redis_prefix))


async def test_a_sealed_value_moved_to_another_key_does_not_decrypt() -> None:
    inner = MemoryKeyValueStore(clock=VirtualClock())
    store = EncryptedStore(inner, Encryptor(generate_key()))
    await store.set("alice/balance", b"100")
    await store.set("bob/balance", b"5")
    await inner.set("bob/balance", await inner.get("alice/balance") or b"")
    with pytest.raises(DecryptionError, match=r"authentication failed .* belongs to another record"):
        await store.get("bob/balance")
    assert await store.keys() == ["alice/balance", "bob/balance"]
    assert await store.delete("bob/balance") and not await store.exists("bob/balance")
