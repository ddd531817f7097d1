"""Conversation history: the messages of each session, in order, searchable, on SQLite or PostgreSQL.

An append returns only after its transaction committed, so an acknowledged message survives a
killed process. Each session row keeps a counter (`last_seq`); an append bumps it and inserts the
message in one transaction, which serializes concurrent writers to the same session (the row is
locked on PostgreSQL, the database on SQLite) and gives gap-free, duplicate-free `seq` numbers.

Encrypted content is bound to its place: the session id and `seq` are the associated data of its
AES-GCM seal, so a ciphertext copied to another session or position fails to decrypt instead of
being read there. Such rows are stored as `v2:` + base64; rows written before (plain base64,
unbound) still read, and `reencrypt()` rewrites them bound.
"""

from __future__ import annotations

import base64
import inspect
import json
import re
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ...core.closing import AsyncClosing
from ...core.errors import NanoBrainError
from ...llm.messages import Message, ToolCall, Usage
from .database import Database
from .history_sql import (
    APPEND_POSTGRES,
    BUMP_SEQ,
    INSERT_MESSAGE,
    INSERT_MESSAGE_RETURNING,
    SELECT_IDS,
    SELECT_MESSAGE,
    UPDATE_MESSAGE,
    ensure_history_schema,
    positional,
    postgres_args,
)

ROLES = ("system", "user", "assistant", "tool")
#: Marks content sealed with its session and position as associated data (':' is not base64).
BOUND = "v2:"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class HistoryError(NanoBrainError):
    """The history cannot do what was asked (bad message, undecryptable content, ...)."""


class SearchUnavailable(HistoryError):
    """Full-text search was asked of a history whose content is encrypted."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch: exact, and the same column type on every database."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def dump_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise HistoryError(f"{what} must be JSON-serializable: {exc}") from exc


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as the history keeps it: the message plus where and when it was stored."""

    message: Message
    id: int
    session_id: str
    seq: int
    created_at: datetime
    model: str | None = None
    usage: Usage | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return self.message.role

    @property
    def content(self) -> str:
        return self.message.content

    def to_message(self) -> Message:
        return self.message


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A message to append together with its own model, token usage and metadata."""

    message: Message
    model: str | None = None
    usage: Usage | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result; a higher `score` is a better match (scores differ between databases)."""

    message: StoredMessage
    score: float


@asynccontextmanager
async def _sqlite_transaction(driver: Any) -> AsyncIterator[None]:
    # sqlite3 opens the transaction itself at the first write; this ends it either way.
    try:
        yield
    except BaseException:
        await driver.rollback()
        raise
    await driver.commit()


class _Parking:
    """At most one idle pooled connection, kept between a history's operations.

    Checking a connection out of the pool costs more than a typical append (a reset, one thread
    hop on aiosqlite; the pre-ping, three round trips on asyncpg), so the last connection used is
    kept for the next call; concurrent calls check out their own. A connection idle for longer
    than `FRESH_SECONDS` goes back through the pool, whose pre-ping notices a restarted server. It
    goes back to the pool on `ConversationHistory.aclose()` and is closed when the engine is disposed.
    """

    FRESH_SECONDS = 2.0
    __slots__ = ("connection", "driver", "engines", "since")

    def __init__(self) -> None:
        self.connection: Any = None
        self.driver: Any = None
        self.engines: weakref.WeakSet[Any] = weakref.WeakSet()  # engines whose disposal we follow
        self.since = 0.0

    def take(self) -> tuple[Any, Any, bool]:
        """The parked connection, its driver connection, and whether it was used recently."""
        connection, driver = self.connection, self.driver
        self.connection = self.driver = None
        return connection, driver, time.monotonic() - self.since < self.FRESH_SECONDS

    def park(self, engine: Any, connection: Any, driver: Any) -> bool:
        if self.connection is not None:
            return False
        if engine.sync_engine not in self.engines:
            from sqlalchemy import event

            event.listen(engine.sync_engine, "engine_disposed", self._disposed)
            self.engines.add(engine.sync_engine)
        self.connection, self.driver, self.since = connection, driver, time.monotonic()
        return True

    def _disposed(self, engine: Any) -> None:
        # Called inside AsyncEngine.dispose() (a greenlet), where the sync API may do I/O.
        if self.connection is not None and self.connection.sync_engine is engine:
            connection, _, _ = self.take()
            connection.sync_connection.invalidate()  # closes the driver connection now
            connection.sync_connection.close()


class ConversationHistory(AsyncClosing):
    """The messages of every session, stored in `database`.

    Appending to a session that does not exist yet creates it (no title, no expiry); use
    `SessionManager` to create sessions with a user, title or time to live (the history does not
    check expiry: `SessionManager.resume` does). `aclose()` (or `async with`) returns the
    connection it keeps between calls to the pool; closing the database does that too.

    With an `encryptor` (an `Encryptor`, or an object with the same `encrypt(data, associated_data)`
    and `decrypt(data, associated_data)`), message content is stored encrypted and bound to its
    session and position, and full-text search is unavailable; tool calls and metadata are
    stored as they are.
    """

    def __init__(
        self,
        database: Database,
        *,
        encryptor: Any | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.database = database
        if encryptor is not None:
            _check_encryptor(encryptor)
        self.encryptor = encryptor
        self._now = now
        self._postgres = database.dialect == "postgresql"
        self._parking = _Parking()

    async def _ready(self) -> None:
        await ensure_history_schema(self.database)

    # -- writing --------------------------------------------------------------------------------

    @asynccontextmanager
    async def _driver(self) -> AsyncIterator[Any]:
        """The driver connection (aiosqlite or asyncpg) of a connection from the database's pool.

        The hot paths (append, paging) talk to the driver directly: SQLAlchemy's cursor layer costs
        several thread hops per statement on aiosqlite, more than the statement itself.
        """
        await self._ready()
        engine = self.database.engine
        connection, driver, fresh = self._parking.take()
        if connection is not None and (
            not fresh or connection.sync_engine is not engine.sync_engine or connection.invalidated
        ):
            await connection.close()  # idle for long (the pool pings it again), or from an earlier engine
            connection = None
        elif connection is not None and self._postgres and driver.is_closed():
            await connection.invalidate()  # the server closed it
            await connection.close()
            connection = None
        if connection is None:
            try:
                connection = await engine.connect()
            except OSError as exc:
                raise self.database.unreachable(exc) from exc
            driver = (await connection.get_raw_connection()).driver_connection
        try:
            yield driver
        except BaseException as exc:
            await connection.close()  # back to the pool, which rolls back whatever is left open
            # The driver's own errors bypass SQLAlchemy's: a damaged file is explained here.
            error = self.database.explain(exc)
            if error is not None:
                raise error from exc
            raise
        if not self._parking.park(engine, connection, driver):
            await connection.close()

    async def aclose(self) -> None:
        """Return the connection this history keeps between calls to the pool."""
        connection, _, _ = self._parking.take()
        if connection is not None:
            await connection.close()

    async def append(
        self,
        session_id: str,
        message: Message,
        *,
        model: str | None = None,
        usage: Usage | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> StoredMessage:
        """Store `message` as the session's next message; returns once it is committed."""
        created = self._now()
        params = self._params(session_id, 0, message, model, usage, metadata, to_micros(created))
        params["count"] = 1
        async with self._driver() as driver:
            if self._postgres and self.encryptor is None:
                # One statement is its own transaction: committed when the row comes back.
                row = await driver.fetchrow(*postgres_args(APPEND_POSTGRES, params))
                message_id, seq = row[0], row[1]
            elif self._postgres:
                # The seal binds the message's number: bump the counter first, then seal and insert.
                async with driver.transaction():
                    seq = await driver.fetchval(*postgres_args(BUMP_SEQ, params))
                    self._number([params], seq)
                    message_id = await driver.fetchval(*postgres_args(INSERT_MESSAGE_RETURNING, params))
            else:
                async with _sqlite_transaction(driver):
                    seq = (await driver.execute_fetchall(BUMP_SEQ, params))[0][0]
                    self._number([params], seq)
                    message_id = (await driver.execute_fetchall(INSERT_MESSAGE_RETURNING, params))[0][0]
        return StoredMessage(message, message_id, session_id, seq, created, model, usage, dict(metadata or {}))

    async def append_many(
        self,
        session_id: str,
        messages: Sequence[Message],
        *,
        model: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[StoredMessage]:
        """Store several messages as consecutive messages of the session, in one transaction."""
        return await self.append_entries(session_id, [HistoryEntry(m, model, None, metadata) for m in messages])

    async def append_entries(self, session_id: str, entries: Sequence[HistoryEntry]) -> list[StoredMessage]:
        """Like `append_many`, each message with its own model, usage and metadata (an agent's turn)."""
        if not entries:
            return []
        created = self._now()
        micros = to_micros(created)
        rows = [self._params(session_id, 0, e.message, e.model, e.usage, e.metadata, micros) for e in entries]
        async with self._driver() as driver:
            if self._postgres:
                async with driver.transaction():
                    first, ids = await self._insert_rows(driver, session_id, rows, micros)
            else:
                async with _sqlite_transaction(driver):
                    first, ids = await self._insert_rows(driver, session_id, rows, micros)
        return [
            StoredMessage(e.message, i, session_id, first + n, created, e.model, e.usage, dict(e.metadata or {}))
            for n, (e, i) in enumerate(zip(entries, ids, strict=True))
        ]

    async def _insert_rows(
        self, driver: Any, session_id: str, rows: list[dict[str, Any]], micros: int
    ) -> tuple[int, list[int]]:
        """Number `rows` after the session's last message and insert them (inside the caller's
        transaction, like `append_entries`); returns the first number and the new ids."""
        bump = {"session_id": session_id, "created_at": micros, "count": len(rows)}
        if self._postgres:
            last = await driver.fetchval(*postgres_args(BUMP_SEQ, bump))
            first = self._number(rows, last)
            sql, names = positional(INSERT_MESSAGE)
            await driver.executemany(sql, [[row[n] for n in names] for row in rows])
            return first, [r[0] for r in await driver.fetch(*postgres_args(SELECT_IDS, {**bump, "seq": first}))]
        last = (await driver.execute_fetchall(BUMP_SEQ, bump))[0][0]
        first = self._number(rows, last)
        await driver.executemany(INSERT_MESSAGE, rows)
        return first, [r[0] for r in await driver.execute_fetchall(SELECT_IDS, {**bump, "seq": first})]

    async def replace(self, session_id: str, seq: int, entries: Sequence[HistoryEntry]) -> list[StoredMessage]:
        """Overwrite message `seq` with the first entry and append the others, in one transaction.

        For a message that grows while it is written (a streamed answer kept as it streams): it is
        stored early, replaced as it grows, and finally replaced by the messages it turned into.
        """
        if not entries:
            raise HistoryError("replace needs at least one entry")
        created = self._now()
        micros = to_micros(created)
        head, *tail = entries
        update = self._params(session_id, seq, head.message, head.model, head.usage, head.metadata, micros)
        rows = [self._params(session_id, 0, e.message, e.model, e.usage, e.metadata, micros) for e in tail]
        first = seq + 1
        ids: list[int] = []
        async with self._driver() as driver:
            if self._postgres:
                async with driver.transaction():
                    found = await driver.fetch(*postgres_args(UPDATE_MESSAGE, update))
                    if found and rows:
                        first, ids = await self._insert_rows(driver, session_id, rows, micros)
            else:
                async with _sqlite_transaction(driver):
                    found = list(await driver.execute_fetchall(UPDATE_MESSAGE, update))
                    if found and rows:
                        first, ids = await self._insert_rows(driver, session_id, rows, micros)
        if not found:
            raise HistoryError(f"session {session_id!r} has no message {seq} to replace")
        head_id, head_created = found[0][0], from_micros(found[0][1])  # it keeps its place and creation time
        stored = [StoredMessage(head.message, head_id, session_id, seq, head_created, head.model, head.usage,
                                dict(head.metadata or {}))]  # fmt: skip
        return stored + [
            StoredMessage(e.message, i, session_id, first + n, created, e.model, e.usage, dict(e.metadata or {}))
            for n, (e, i) in enumerate(zip(tail, ids, strict=True))
        ]

    def _params(
        self,
        session_id: str,
        seq: int,
        message: Message,
        model: str | None,
        usage: Usage | None,
        metadata: dict[str, Any] | None,
        created_at: int,
    ) -> dict[str, Any]:
        """A message as a row. With an encryptor and a known `seq` (> 0) the content is sealed to its
        place; a row numbered later (`seq` 0) is sealed by `_number`."""
        if not isinstance(message, Message):
            raise HistoryError(f"expected a Message, got {type(message).__name__}")
        if message.role not in ROLES:
            raise HistoryError(f"message role must be one of {', '.join(ROLES)}, got {message.role!r}")
        if not isinstance(session_id, str) or not session_id:
            raise HistoryError("session_id must be a non-empty string")
        calls = None
        if message.tool_calls:
            calls = dump_json(
                [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls],
                "tool call arguments",
            )
        row = {
            "session_id": session_id,
            "seq": seq,
            "role": message.role,
            "content": message.content,
            "tool_calls": calls,
            "tool_call_id": message.tool_call_id,
            "name": message.name,
            "is_error": bool(message.is_error),
            "model": model,
            "prompt_tokens": usage.prompt_tokens if usage is not None else None,
            "completion_tokens": usage.completion_tokens if usage is not None else None,
            "metadata": dump_json(metadata or {}, "message metadata"),
            "created_at": created_at,
            "encrypted": False,
        }
        if seq > 0:
            self._seal(row)
        return row

    def _number(self, rows: list[dict[str, Any]], last: int) -> int:
        """Number rows from `_params(..., seq=0)` so that the last one gets `last`, and seal them to
        their place (with an encryptor); returns the first number."""
        first = last - len(rows) + 1
        for offset, row in enumerate(rows):
            row["seq"] = first + offset
            self._seal(row)
        return first

    def _seal(self, row: dict[str, Any]) -> None:
        """Encrypt a numbered row's content in place (nothing without an encryptor)."""
        if self.encryptor is not None:
            row["content"] = self._sealed(row["content"], row["session_id"], row["seq"])
            row["encrypted"] = True

    def _sealed(self, content: str, session_id: str, seq: int) -> str:
        sealed = self.encryptor.encrypt(content.encode("utf-8"), _place(session_id, seq))  # type: ignore[union-attr]
        return BOUND + base64.b64encode(sealed).decode("ascii")

    async def _insert_stored(self, connection: Any, session_id: str, messages: Sequence[StoredMessage]) -> None:
        """Insert already numbered messages inside the caller's transaction (import)."""
        from sqlalchemy import text

        rows = [
            self._params(session_id, m.seq, m.message, m.model, m.usage, m.metadata, to_micros(m.created_at))
            for m in messages
        ]
        if rows:
            await connection.execute(text(INSERT_MESSAGE), rows)

    # -- reading --------------------------------------------------------------------------------

    async def messages(
        self,
        session_id: str,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> list[StoredMessage]:
        """A page of the session's messages, oldest first.

        `after_seq` pages forward (`after_seq=0` starts at the beginning): the first `limit`
        messages after it. `before_seq` pages backward: the last `limit` messages before it.
        With neither, `limit` keeps the latest messages (the recent context of a chat).
        """
        if limit is not None and limit < 0:
            raise HistoryError(f"limit must be >= 0, got {limit}")
        where: list[str] = ["m.session_id = :s"]
        params: dict[str, Any] = {"s": session_id}
        if after_seq is not None:
            where.append("m.seq > :after")
            params["after"] = after_seq
        if before_seq is not None:
            where.append("m.seq < :before")
            params["before"] = before_seq
        # Newest first when the page should end at the latest message (or just before `before_seq`).
        backward = limit is not None and after_seq is None
        sql = f"{SELECT_MESSAGE} WHERE {' AND '.join(where)} ORDER BY m.seq{' DESC' if backward else ''}"
        if limit is not None:
            sql += " LIMIT :limit"
            params["limit"] = limit
        async with self._driver() as driver:
            if self._postgres:
                rows = list(await driver.fetch(*postgres_args(sql, params)))
            else:
                rows = list(await driver.execute_fetchall(sql, params))
        if backward:
            rows.reverse()
        return [self._stored(row) for row in rows]

    async def get(self, session_id: str, seq: int) -> StoredMessage | None:
        from sqlalchemy import text

        await self._ready()
        async with self.database.connect() as connection:
            row = (
                await connection.execute(
                    text(f"{SELECT_MESSAGE} WHERE m.session_id = :s AND m.seq = :q"), {"s": session_id, "q": seq}
                )
            ).first()
        return self._stored(row) if row is not None else None

    async def count(self, session_id: str) -> int:
        from sqlalchemy import text

        await self._ready()
        async with self.database.connect() as connection:
            result = await connection.execute(
                text("SELECT COUNT(*) FROM history_messages WHERE session_id = :s"), {"s": session_id}
            )
            return int(result.scalar_one())

    async def search(self, query: str, *, session_id: str | None = None, limit: int = 20) -> list[SearchHit]:
        """Messages containing every word of `query` (stemmed), best match first."""
        from sqlalchemy import text

        if self.encryptor is not None:
            raise SearchUnavailable(
                "full-text search is unavailable on an encrypted history: the database holds only ciphertext"
            )
        await self._ready()
        params: dict[str, Any] = {"limit": limit}
        scope = ""
        if session_id is not None:
            scope = " AND m.session_id = :s"
            params["s"] = session_id
        if self._postgres:
            params["q"] = query
            sql = (
                f"{SELECT_MESSAGE.replace(' FROM', ', ts_rank(m.search, q) AS score FROM', 1)}"
                f", plainto_tsquery('english', :q) q WHERE m.search @@ q{scope} "
                "ORDER BY score DESC, m.id DESC LIMIT :limit"
            )
        else:
            # Each word quoted: FTS5 operators and punctuation in user text are matched as words.
            words = re.findall(r"\w+", query)
            if not words:
                return []
            params["q"] = " ".join(f'"{w}"' for w in words)
            sql = (
                f"{SELECT_MESSAGE.replace(' FROM', ', -f.rank AS score FROM', 1)}"
                f" JOIN history_messages_fts f ON f.rowid = m.id WHERE history_messages_fts MATCH :q{scope} "
                "ORDER BY f.rank, m.id DESC LIMIT :limit"
            )
        async with self.database.connect() as connection:
            rows = (await connection.execute(text(sql), params)).all()
        return [SearchHit(self._stored(row[:15]), float(row[15])) for row in rows]

    def _stored(self, row: Any) -> StoredMessage:
        (mid, session_id, seq, role, content, calls, call_id, name, is_error, model, prompt_tokens, completion_tokens,
         metadata, created_at, encrypted) = row  # fmt: skip
        if encrypted:
            content = self._decrypt(content, mid, session_id, seq)
        tool_calls = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in json.loads(calls)) if calls else ()
        message = Message(role, content, tool_calls, call_id, name, bool(is_error))
        # Both token counts are written together: one NULL means no usage was recorded.
        usage = None if prompt_tokens is None else Usage(prompt_tokens, completion_tokens)
        return StoredMessage(
            message,
            mid,
            session_id,
            seq,
            _EPOCH + timedelta(microseconds=created_at),
            model,
            usage,
            {} if metadata == "{}" else json.loads(metadata),
        )

    def _decrypt(self, content: str, mid: int, session_id: str, seq: int) -> str:
        where = f"message {seq} of session {session_id!r} (id {mid})"
        if self.encryptor is None:
            raise HistoryError(f"{where} is encrypted: open the history with its encryptor to read it")
        bound = content.startswith(BOUND)
        try:
            if bound:
                plain = self.encryptor.decrypt(base64.b64decode(content[len(BOUND) :]), _place(session_id, seq))
            else:  # written before rows were bound to their place
                plain = self.encryptor.decrypt(base64.b64decode(content))
            return plain.decode("utf-8")
        except NanoBrainError as exc:
            # The encryptor's own error says what is wrong (wrong key, tampered, moved); add where.
            exc.args = (f"cannot decrypt {where}: {exc}",)
            raise
        except Exception as exc:
            raise HistoryError(f"cannot decrypt {where}: {type(exc).__name__}: {exc}") from exc

    # -- maintenance ----------------------------------------------------------------------------

    async def reencrypt(self, *, include_plaintext: bool = False, batch_size: int = 500) -> int:
        """Rewrite encrypted content with the encryptor's current key (after a key rotation).

        The encryptor must still decrypt the old content; if it has `needs_rotation(data)`, content
        already under the current key and bound to its place is left alone; content written
        before rows were bound is always rewritten, bound. `include_plaintext` also encrypts
        messages stored before encryption was turned on. Returns how many messages were rewritten.
        """
        from sqlalchemy import text

        if self.encryptor is None:
            raise HistoryError("reencrypt needs a history opened with an encryptor")
        await self._ready()
        condition = "" if include_plaintext else " AND encrypted = :yes"
        done, last_id = 0, 0
        while True:
            async with self.database.begin() as connection:
                rows = (
                    await connection.execute(
                        text(
                            "SELECT id, session_id, seq, content, encrypted FROM history_messages "
                            f"WHERE id > :last{condition} ORDER BY id LIMIT :n"
                        ),
                        {"last": last_id, "n": batch_size, "yes": True},
                    )
                ).all()
                if not rows:
                    return done
                updates = []
                current = getattr(self.encryptor, "needs_rotation", None)
                for mid, session_id, seq, content, encrypted in rows:
                    bound = encrypted and content.startswith(BOUND)
                    if bound and current is not None and not current(base64.b64decode(content[len(BOUND) :])):
                        continue
                    plain = self._decrypt(content, mid, session_id, seq) if encrypted else content
                    updates.append({"id": mid, "c": self._sealed(plain, session_id, seq), "yes": True})
                if updates:
                    await connection.execute(
                        text("UPDATE history_messages SET content = :c, encrypted = :yes WHERE id = :id"), updates
                    )
            done += len(updates)
            last_id = rows[-1][0]

    def __repr__(self) -> str:
        return f"ConversationHistory({self.database!r}{', encrypted' if self.encryptor is not None else ''})"


def _place(session_id: str, seq: int) -> bytes:
    """The associated data that binds a message's ciphertext to its session and position."""
    return json.dumps(["nanobrain-history", session_id, seq], ensure_ascii=False).encode("utf-8")


def _check_encryptor(encryptor: Any) -> None:
    for method in ("encrypt", "decrypt"):
        function = getattr(encryptor, method, None)
        try:
            inspect.signature(function).bind(b"", b"")  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise HistoryError(
                f"the history's encryptor ({type(encryptor).__name__}) needs {method}(data, associated_data), "
                "as nanobrain.infrastructure.security.Encryptor has: each message is bound to its place"
            ) from None
