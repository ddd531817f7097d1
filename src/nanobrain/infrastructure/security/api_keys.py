"""API keys for the HTTP server: created and revoked from the CLI, stored hashed, each with a role.

A key reads `nb_<id>_<secret>`. Only the SHA-256 of the whole key is stored: the secret has 256
random bits, so a fast hash is as safe as a slow one and keeps checking a request cheap. The id
lets a key be listed and revoked without knowing its secret. Roles are ordered: `admin` may do
everything `run` may, and `run` everything `read` may.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...core.errors import NanoBrainError
from ..data.database import Database, Migration
from ..data.history import from_micros, to_micros, utcnow

ROLES = ("read", "run", "admin")
"""Roles from the least to the most allowed."""

_KEY = re.compile(r"^nb_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_MAX_NAME = 100


class ApiKeyError(NanoBrainError):
    """A key cannot be created or revoked as asked (bad name or role, no such key)."""


class ApiKeyNotFound(ApiKeyError, LookupError):
    """No key has this id."""


def role_allows(has: str, needs: str) -> bool:
    """Whether a principal with role `has` may do what needs `needs`."""
    return ROLES.index(has) >= ROLES.index(needs)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ApiKeyError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return role


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


async def _create_table(connection: Any) -> None:
    from sqlalchemy import text

    await connection.execute(
        text(
            "CREATE TABLE api_keys (id VARCHAR(16) PRIMARY KEY, name VARCHAR(100) NOT NULL, "
            "role VARCHAR(16) NOT NULL, key_hash VARCHAR(64) NOT NULL, created_at BIGINT NOT NULL, "
            "revoked_at BIGINT)"
        )
    )


MIGRATIONS = (Migration(1, _create_table, "API keys"),)
_COLUMNS = "id, name, role, created_at, revoked_at"


def _key(row: Any) -> ApiKey:
    kid, name, role, created_at, revoked_at = row
    return ApiKey(kid, name, role, from_micros(created_at), from_micros(revoked_at) if revoked_at else None)


class ApiKeyStore:
    """API keys in `database` (by default the NanoBrain database under NANOBRAIN_HOME)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def _ready(self) -> None:
        await self.database.migrate("api_keys", MIGRATIONS)

    async def create(self, name: str, role: str = "run") -> tuple[ApiKey, str]:
        """A new key; returns it and its secret text, which is shown once and never stored."""
        name = name.strip()
        if not name or len(name) > _MAX_NAME:
            raise ApiKeyError(f"a key needs a name of 1 to {_MAX_NAME} characters, got {name!r}")
        check_role(role)
        from sqlalchemy import text

        await self._ready()
        kid = secrets.token_hex(8)
        secret = f"nb_{kid}_{secrets.token_urlsafe(32)}"
        key = ApiKey(kid, name, role, utcnow())
        async with self.database.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO api_keys (id, name, role, key_hash, created_at) VALUES (:id, :n, :r, :h, :c)"
                ),
                {"id": kid, "n": name, "r": role, "h": _hash(secret), "c": to_micros(key.created_at)},
            )
        return key, secret

    async def list(self, *, include_revoked: bool = True) -> builtins.list[ApiKey]:
        """Keys, oldest first."""
        from sqlalchemy import text

        await self._ready()
        sql = f"SELECT {_COLUMNS} FROM api_keys"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        async with self.database.connect() as connection:
            rows = (await connection.execute(text(sql + " ORDER BY created_at, id"))).all()
        return [_key(row) for row in rows]

    async def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by id (revoking twice keeps the first time); raises ApiKeyNotFound."""
        from sqlalchemy import text

        await self._ready()
        async with self.database.begin() as connection:
            row = (
                await connection.execute(
                    text(
                        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, :now) WHERE id = :id "
                        f"RETURNING {_COLUMNS}"
                    ),
                    {"now": to_micros(utcnow()), "id": key_id},
                )
            ).first()
        if row is None:
            raise ApiKeyNotFound(f"no API key with id {key_id!r} (see `nanobrain keys list`)")
        return _key(row)

    async def verify(self, secret: str) -> ApiKey | None:
        """The active key whose text is `secret`, or None (malformed, unknown or revoked)."""
        from sqlalchemy import text

        found = _KEY.match(secret)
        if found is None:
            return None
        await self._ready()
        async with self.database.connect() as connection:
            row = (
                await connection.execute(
                    text(f"SELECT {_COLUMNS}, key_hash FROM api_keys WHERE id = :id"), {"id": found.group(1)}
                )
            ).first()
        if row is None or not hmac.compare_digest(row[5], _hash(secret)):
            return None
        key = _key(row[:5])
        return key if key.active else None

    async def active_count(self) -> int:
        from sqlalchemy import text

        await self._ready()
        async with self.database.connect() as connection:
            result = await connection.execute(text("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL"))
            return int(result.scalar_one())

    def __repr__(self) -> str:
        return f"ApiKeyStore({self.database!r})"
