"""Sessions (create, list, resume, rename, delete, expire) and per-user preferences.

Sessions live in the same table as the conversation history's, so a session created here is
the one `ConversationHistory.append` writes to, and deleting it deletes its messages.
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .database import Database, Migration
from .history import HistoryError, dump_json, from_micros, to_micros, utcnow
from .history_sql import ensure_history_schema


class SessionNotFound(HistoryError, LookupError):
    """No session has this id."""


class SessionExpired(HistoryError):
    """The session's time to live has passed."""


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    created_at: datetime
    updated_at: datetime
    user_id: str | None = None
    title: str | None = None
    expires_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: How many messages were appended (the last `seq`).
    message_count: int = 0

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


_SESSION_COLUMNS = "id, user_id, title, created_at, updated_at, expires_at, metadata, last_seq"


def _session(row: Any) -> Session:
    sid, user_id, title, created_at, updated_at, expires_at, metadata, last_seq = row
    return Session(
        id=sid,
        created_at=from_micros(created_at),
        updated_at=from_micros(updated_at),
        user_id=user_id,
        title=title,
        expires_at=from_micros(expires_at) if expires_at is not None else None,
        metadata=json.loads(metadata) if metadata else {},
        message_count=last_seq,
    )


async def _create_preferences(connection: Any) -> None:
    from sqlalchemy import text

    await connection.execute(
        text("CREATE TABLE user_preferences (user_id TEXT PRIMARY KEY, data TEXT NOT NULL, updated_at BIGINT NOT NULL)")
    )


PREFERENCES_MIGRATIONS = (Migration(1, _create_preferences, "user preferences"),)


def _seconds(ttl: float | timedelta) -> timedelta:
    delta = ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl)
    if delta <= timedelta(0):
        raise HistoryError(f"ttl must be positive, got {ttl!r}")
    return delta


class SessionManager:
    """Sessions and user preferences stored in `database`.

    `now` supplies the wall-clock time (tests pass a fixed clock to check expiry without waiting).
    """

    def __init__(self, database: Database, *, now: Callable[[], datetime] = utcnow) -> None:
        self.database = database
        self._now = now

    async def _ready(self) -> None:
        await ensure_history_schema(self.database)

    async def create(
        self,
        user_id: str | None = None,
        title: str | None = None,
        ttl: float | timedelta | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
    ) -> Session:
        """A new session; `ttl` (seconds or a timedelta) makes it expire, `session_id` picks its id."""
        await self._ready()
        now = self._now()
        session = Session(
            id=session_id or uuid.uuid4().hex,
            created_at=now,
            updated_at=now,
            user_id=user_id,
            title=title,
            expires_at=now + _seconds(ttl) if ttl is not None else None,
            metadata=dict(metadata or {}),
        )
        async with self.database.begin() as connection:
            if not await self._insert(connection, session):
                raise HistoryError(f"a session with id {session.id!r} exists already")
        return session

    async def _insert(self, connection: Any, session: Session) -> bool:
        """Insert a session row in the caller's transaction (create, import); False if the id is taken."""
        from sqlalchemy import text

        result = await connection.execute(
            text(
                f"INSERT INTO history_sessions ({_SESSION_COLUMNS}) VALUES (:id, :u, :t, :c, :m, :e, :meta, :n) "
                "ON CONFLICT (id) DO NOTHING"
            ),
            {
                "id": session.id,
                "u": session.user_id,
                "t": session.title,
                "c": to_micros(session.created_at),
                "m": to_micros(session.updated_at),
                "e": to_micros(session.expires_at) if session.expires_at is not None else None,
                "meta": dump_json(session.metadata, "session metadata"),
                "n": session.message_count,
            },
        )
        return bool(result.rowcount)

    async def get(self, session_id: str) -> Session | None:
        """The session, expired or not; None if there is no such session."""
        from sqlalchemy import text

        await self._ready()
        async with self.database.connect() as connection:
            row = (
                await connection.execute(
                    text(f"SELECT {_SESSION_COLUMNS} FROM history_sessions WHERE id = :id"), {"id": session_id}
                )
            ).first()
        return _session(row) if row is not None else None

    async def list(
        self, user_id: str | None = None, *, limit: int | None = 50, include_expired: bool = False
    ) -> builtins.list[Session]:
        """Sessions, most recently updated first; all users' when `user_id` is None, all when `limit` is None."""
        from sqlalchemy import text

        await self._ready()
        where: builtins.list[str] = []
        params: dict[str, Any] = {"limit": limit, "now": to_micros(self._now())}
        if user_id is not None:
            where.append("user_id = :u")
            params["u"] = user_id
        if not include_expired:
            where.append("(expires_at IS NULL OR expires_at > :now)")
        sql = f"SELECT {_SESSION_COLUMNS} FROM history_sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY updated_at DESC, created_at DESC, id"
        if limit is not None:
            sql += " LIMIT :limit"
        async with self.database.connect() as connection:
            rows = (await connection.execute(text(sql), params)).all()
        return [_session(row) for row in rows]

    async def resume(self, session_id: str) -> Session:
        """The session to continue (touched); an error if it does not exist or has expired."""
        session = await self.get(session_id)
        if session is None:
            raise SessionNotFound(f"no session {session_id!r}: it never existed or was deleted")
        if session.is_expired(self._now()):
            assert session.expires_at is not None
            raise SessionExpired(
                f"session {session_id!r} expired at {session.expires_at.isoformat(timespec='seconds')}; "
                "start a new session"
            )
        return await self.touch(session_id)

    async def _update(self, session_id: str, assignments: str, params: dict[str, Any]) -> Session:
        from sqlalchemy import text

        await self._ready()
        async with self.database.begin() as connection:
            row = (
                await connection.execute(
                    text(f"UPDATE history_sessions SET {assignments} WHERE id = :id RETURNING {_SESSION_COLUMNS}"),
                    {**params, "id": session_id},
                )
            ).first()
        if row is None:
            raise SessionNotFound(f"no session {session_id!r}")
        return _session(row)

    async def rename(self, session_id: str, title: str | None) -> Session:
        return await self._update(
            session_id, "title = :t, updated_at = :now", {"t": title, "now": to_micros(self._now())}
        )

    async def touch(self, session_id: str, *, ttl: float | timedelta | None = None) -> Session:
        """Mark the session as used now; with `ttl`, it now expires that long from now."""
        now = self._now()
        if ttl is None:
            return await self._update(session_id, "updated_at = :now", {"now": to_micros(now)})
        return await self._update(
            session_id,
            "updated_at = :now, expires_at = :e",
            {"now": to_micros(now), "e": to_micros(now + _seconds(ttl))},
        )

    async def update_metadata(self, session_id: str, **values: Any) -> Session:
        """Merge `values` into the session's metadata."""
        from sqlalchemy import text

        await self._ready()
        now = to_micros(self._now())
        async with self.database.begin() as connection:
            # Write first: it takes the lock before the read, so concurrent merges do not lose keys.
            result = await connection.execute(
                text("UPDATE history_sessions SET updated_at = :now WHERE id = :id"), {"now": now, "id": session_id}
            )
            if result.rowcount == 0:
                raise SessionNotFound(f"no session {session_id!r}")
            current = (
                await connection.execute(
                    text("SELECT metadata FROM history_sessions WHERE id = :id"), {"id": session_id}
                )
            ).scalar_one()
            merged = {**json.loads(current), **values}
            row = (
                await connection.execute(
                    text(f"UPDATE history_sessions SET metadata = :m WHERE id = :id RETURNING {_SESSION_COLUMNS}"),
                    {"m": dump_json(merged, "session metadata"), "id": session_id},
                )
            ).one()
        return _session(row)

    async def expire(self, session_id: str) -> Session:
        """End the session now: it is no longer listed or resumable, and the next purge deletes it."""
        return await self._update(session_id, "expires_at = :now", {"now": to_micros(self._now())})

    async def delete(self, session_id: str) -> bool:
        """Delete the session and its messages; False if there was no such session."""
        from sqlalchemy import text

        await self._ready()
        async with self.database.begin() as connection:
            result = await connection.execute(text("DELETE FROM history_sessions WHERE id = :id"), {"id": session_id})
        return bool(result.rowcount)

    async def purge_expired(self, now: datetime | None = None) -> int:
        """Delete every session (with its messages) expired at `now`; returns how many."""
        from sqlalchemy import text

        await self._ready()
        moment = to_micros(now if now is not None else self._now())
        async with self.database.begin() as connection:
            result = await connection.execute(
                text("DELETE FROM history_sessions WHERE expires_at IS NOT NULL AND expires_at <= :now"),
                {"now": moment},
            )
        return int(result.rowcount)

    # -- preferences ----------------------------------------------------------------------------

    async def _preferences_ready(self) -> None:
        await self.database.migrate("preferences", PREFERENCES_MIGRATIONS)

    async def get_preferences(self, user_id: str) -> dict[str, Any]:
        """The user's preferences ({} when none were set)."""
        from sqlalchemy import text

        await self._preferences_ready()
        async with self.database.connect() as connection:
            data = (
                await connection.execute(text("SELECT data FROM user_preferences WHERE user_id = :u"), {"u": user_id})
            ).scalar_one_or_none()
        return json.loads(data) if data else {}

    async def set_preferences(self, user_id: str, /, **values: Any) -> dict[str, Any]:
        """Replace the user's preferences with `values`."""
        return await self._write_preferences(user_id, values, merge=False)

    async def update_preferences(self, user_id: str, /, **values: Any) -> dict[str, Any]:
        """Merge `values` into the user's preferences; returns the result."""
        return await self._write_preferences(user_id, values, merge=True)

    async def _write_preferences(self, user_id: str, values: dict[str, Any], *, merge: bool) -> dict[str, Any]:
        from sqlalchemy import text

        if not isinstance(user_id, str) or not user_id:
            raise HistoryError("preferences need a user_id (a non-empty string)")
        dump_json(values, "preferences")  # fail before touching the database
        await self._preferences_ready()
        now = to_micros(self._now())
        async with self.database.begin() as connection:
            # Write first: the row (PostgreSQL) or the database (SQLite) is locked before the read,
            # so two concurrent merges cannot lose each other's keys.
            await connection.execute(
                text(
                    "INSERT INTO user_preferences (user_id, data, updated_at) VALUES (:u, '{}', :now) "
                    "ON CONFLICT (user_id) DO UPDATE SET updated_at = :now"
                ),
                {"u": user_id, "now": now},
            )
            merged = dict(values)
            if merge:
                current = (
                    await connection.execute(
                        text("SELECT data FROM user_preferences WHERE user_id = :u"), {"u": user_id}
                    )
                ).scalar_one()
                merged = {**json.loads(current), **values}
            await connection.execute(
                text("UPDATE user_preferences SET data = :d WHERE user_id = :u"),
                {"d": dump_json(merged, "preferences"), "u": user_id},
            )
        return merged

    def __repr__(self) -> str:
        return f"SessionManager({self.database!r})"
