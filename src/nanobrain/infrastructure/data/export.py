"""Export sessions as JSON, JSONL, CSV or Markdown; import them back from JSON or JSONL.

JSON and JSONL keep everything (every message field, model, usage, metadata, timestamps to the
microsecond, the session's user, title and metadata): exporting an imported file gives the same
bytes. CSV (one row per message) and Markdown (for reading) are export-only.

An import checks the whole file before it writes anything, reports every problem with its line
(JSONL) or path (JSON) and field, and writes in one transaction: a bad file imports nothing.
Session ids are kept; when an id is already taken in the target database the session gets a
new id, and `import_file` returns the ids actually used, in file order.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from ...core.errors import Problem, ProblemsError
from ...llm.messages import Message, ToolCall, Usage
from .history import ROLES, ConversationHistory, HistoryError, StoredMessage
from .history_sql import ensure_history_schema
from .sessions import Session, SessionManager, SessionNotFound

ExportFormat = Literal["json", "jsonl", "csv", "markdown"]
FORMAT_NAME = "nanobrain-history"
FORMAT_VERSION = 1
_EXTENSIONS: dict[str, ExportFormat] = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".md": "markdown",
    ".markdown": "markdown",
}
_MAX_PROBLEMS = 50
CSV_COLUMNS = (
    "session_id", "session_title", "user_id", "seq", "created_at", "role", "name", "content",
    "tool_calls", "tool_call_id", "is_error", "model", "prompt_tokens", "completion_tokens", "metadata",
)  # fmt: skip


class ExportError(HistoryError):
    """An export or import was asked for something impossible (unknown format, missing session)."""


class ImportFileError(ProblemsError, HistoryError):
    """The file to import is not a valid history export; nothing was imported."""

    kind = "not a valid history export (nothing was imported)"


def _timestamp(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="microseconds")


def _format_of(name: str, format: str | None, *, reading: bool) -> ExportFormat:
    allowed = ("json", "jsonl") if reading else tuple(_EXTENSIONS.values())
    if format is None:
        found = _EXTENSIONS.get(Path(name).suffix.lower())
        if found is None:
            raise ExportError(f"cannot tell the format of {name!r} from its extension: pass format=")
        format = found
    if format not in allowed:
        verb = "import reads" if reading else "export writes"
        raise ExportError(f"unknown format {format!r}: {verb} {', '.join(dict.fromkeys(allowed))}")
    return format


def session_record(session: Session) -> dict[str, Any]:
    return {
        "id": session.id,
        "user_id": session.user_id,
        "title": session.title,
        "created_at": _timestamp(session.created_at),
        "updated_at": _timestamp(session.updated_at),
        "expires_at": _timestamp(session.expires_at),
        "metadata": session.metadata,
    }


def message_record(stored: StoredMessage) -> dict[str, Any]:
    message = stored.message
    return {
        "seq": stored.seq,
        "role": message.role,
        "content": message.content,
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls],
        "tool_call_id": message.tool_call_id,
        "name": message.name,
        "is_error": message.is_error,
        "model": stored.model,
        "usage": None
        if stored.usage is None
        else {"prompt_tokens": stored.usage.prompt_tokens, "completion_tokens": stored.usage.completion_tokens},
        "metadata": stored.metadata,
        "created_at": _timestamp(stored.created_at),
    }


Exported = list[tuple[Session, list[StoredMessage]]]


class ExportManager:
    """Moves sessions between databases and files."""

    def __init__(self, history: ConversationHistory, sessions: SessionManager | None = None) -> None:
        self.history = history
        self.sessions = sessions or SessionManager(history.database)

    # -- export ---------------------------------------------------------------------------------

    async def export(
        self,
        session_ids: Sequence[str] | str | None,
        destination: str | os.PathLike[str] | TextIO,
        format: ExportFormat | None = None,
    ) -> int:
        """Write the sessions (all of them when `session_ids` is None); returns the message count.

        The format comes from the file extension unless given; a stream needs `format`. A file is
        replaced atomically, so a failed export leaves no half-written file.
        """
        if isinstance(destination, str | os.PathLike):
            chosen = _format_of(os.fspath(destination), format, reading=False)
        elif format is None:
            raise ExportError("exporting to a stream needs format= (json, jsonl, csv or markdown)")
        else:
            chosen = _format_of("", format, reading=False)
        data = await self._collect(session_ids)
        text = _RENDERERS[chosen](data)
        if isinstance(destination, str | os.PathLike):
            await asyncio.to_thread(_write_atomically, Path(destination), text)
        else:
            destination.write(text)
        return sum(len(messages) for _, messages in data)

    async def _collect(self, session_ids: Sequence[str] | str | None) -> Exported:
        if session_ids is None:
            sessions = sorted(
                await self.sessions.list(limit=None, include_expired=True), key=lambda s: (s.created_at, s.id)
            )
        else:
            ids = [session_ids] if isinstance(session_ids, str) else list(session_ids)
            sessions = []
            for sid in ids:
                session = await self.sessions.get(sid)
                if session is None:
                    raise SessionNotFound(f"cannot export session {sid!r}: there is no such session")
                sessions.append(session)
        return [(s, await self.history.messages(s.id)) for s in sessions]

    # -- import ---------------------------------------------------------------------------------

    async def import_file(self, source: str | os.PathLike[str] | TextIO, *, format: str | None = None) -> list[str]:
        """Import every session of a JSON or JSONL export; returns the session ids used, in order."""
        if isinstance(source, str | os.PathLike):
            name = os.fspath(source)
            chosen = _format_of(name, format, reading=True)
            try:
                raw = await asyncio.to_thread(Path(name).read_bytes)
            except OSError as exc:
                raise ExportError(f"cannot read {name}: {exc.strerror or exc}") from exc
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ImportFileError([Problem("", f"not UTF-8 text (byte {exc.start})", file=name)]) from None
        else:
            if format is None:
                raise ExportError("importing from a stream needs format= (json or jsonl)")
            name, chosen, text = (
                getattr(source, "name", "<stream>"),
                _format_of("", format, reading=True),
                source.read(),
            )
        reader = _Reader(str(name))
        parsed = reader.read_json(text) if chosen == "json" else reader.read_jsonl(text)
        if reader.problems:
            raise ImportFileError(reader.problems[:_MAX_PROBLEMS], subject=str(name))
        return await self._write(parsed)

    async def _write(self, parsed: Exported) -> list[str]:
        database = self.history.database
        await ensure_history_schema(database)
        used: list[str] = []
        async with database.begin() as connection:
            if database.dialect == "sqlite":
                # Lock up front: the checks and inserts below see one consistent database.
                await connection.exec_driver_sql("BEGIN IMMEDIATE")
            for session, messages in parsed:
                session = replace(session, message_count=max((m.seq for m in messages), default=0))
                if not await self.sessions._insert(connection, session):
                    session = replace(session, id=uuid.uuid4().hex)  # the id is taken here: keep both
                    await self.sessions._insert(connection, session)
                await self.history._insert_stored(connection, session.id, messages)
                used.append(session.id)
        return used


def _write_atomically(path: Path, text: str) -> None:
    # Conversations are private: a folder made for them and the file (mkstemp's 0600) are owner-only.
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- renderers ---------------------------------------------------------------------------------


def _render_json(data: Exported) -> str:
    document = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "sessions": [{**session_record(s), "messages": [message_record(m) for m in ms]} for s, ms in data],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def _render_jsonl(data: Exported) -> str:
    lines = [{"type": "header", "format": FORMAT_NAME, "version": FORMAT_VERSION}]
    for session, messages in data:
        lines.append({"type": "session", **session_record(session)})
        lines.extend({"type": "message", "session_id": session.id, **message_record(m)} for m in messages)
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


def _render_csv(data: Exported) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for session, messages in data:
        for stored in messages:
            record = message_record(stored)
            usage = record["usage"] or {}
            writer.writerow(
                [
                    session.id,
                    session.title or "",
                    session.user_id or "",
                    stored.seq,
                    record["created_at"],
                    stored.role,
                    stored.message.name or "",
                    stored.content,
                    json.dumps(record["tool_calls"], ensure_ascii=False) if record["tool_calls"] else "",
                    stored.message.tool_call_id or "",
                    "true" if stored.message.is_error else "false",
                    stored.model or "",
                    usage.get("prompt_tokens", ""),
                    usage.get("completion_tokens", ""),
                    json.dumps(stored.metadata, ensure_ascii=False) if stored.metadata else "",
                ]
            )
    return out.getvalue()


def _render_markdown(data: Exported) -> str:
    parts: list[str] = []
    for session, messages in data:
        parts.append(f"# {session.title or 'Untitled session'}\n")
        facts = [f"- Session: `{session.id}`"]
        if session.user_id:
            facts.append(f"- User: `{session.user_id}`")
        facts.append(f"- Created: {_readable(session.created_at)}")
        facts.append(f"- Updated: {_readable(session.updated_at)}")
        if session.expires_at:
            facts.append(f"- Expires: {_readable(session.expires_at)}")
        parts.append("\n".join(facts) + "\n")
        for stored in messages:
            message = stored.message
            heading = f"## {stored.seq}. {message.role}"
            if message.role == "tool" and message.name:
                heading += f" `{message.name}`" + (" (error)" if message.is_error else "")
            details = [_readable(stored.created_at)]
            if stored.model:
                details.append(f"model `{stored.model}`")
            if stored.usage is not None:
                details.append(
                    f"{stored.usage.prompt_tokens} prompt + {stored.usage.completion_tokens} completion tokens"
                )
            parts.append(f"{heading}\n\n*{' · '.join(details)}*\n")
            if message.content:
                parts.append(message.content.rstrip("\n") + "\n")
            for call in message.tool_calls:
                arguments = json.dumps(call.arguments, ensure_ascii=False, indent=2)
                parts.append(f"Tool call `{call.name}` (`{call.id}`):\n\n```json\n{arguments}\n```\n")
        parts.append("---\n")
    return "\n".join(parts)


def _readable(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_RENDERERS: dict[str, Callable[[Exported], str]] = {
    "json": _render_json,
    "jsonl": _render_jsonl,
    "csv": _render_csv,
    "markdown": _render_markdown,
}


# -- reading and checking an import ------------------------------------------------------------

_SESSION_FIELDS = {"id", "user_id", "title", "created_at", "updated_at", "expires_at", "metadata"}
_MESSAGE_FIELDS = {
    "seq", "role", "content", "tool_calls", "tool_call_id", "name", "is_error", "model", "usage", "metadata",
    "created_at",
}  # fmt: skip
_MISSING: Any = object()
ROLE_EXPECTED = "one of " + ", ".join(ROLES)
TOOL_CALLS_EXPECTED = 'a list of {"id": string, "name": string, "arguments": object}'
USAGE_EXPECTED = '{"prompt_tokens": n, "completion_tokens": n} with whole numbers n >= 0'


def _describe(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    if value is None:
        return "null"
    kind = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    shown = json.dumps(value, ensure_ascii=False)
    return f"{kind.get(type(value), type(value).__name__)} ({shown[:40] + '...' if len(shown) > 40 else shown})"


class _Reader:
    """Turns a parsed export into sessions and messages, collecting every problem on the way."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.now = datetime.now(UTC)

    def fail(self, where: str, message: str, line: int | None) -> None:
        self.problems.append(Problem(where, message, file=self.file, line=line))

    def read_json(self, text: str) -> Exported:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            self.fail("", f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno)
            return []
        if not isinstance(document, dict):
            self.fail(
                "", f"expected an object with 'format', 'version' and 'sessions', got {_describe(document)}", None
            )
            return []
        self._header(document, None, {"format", "version", "sessions"})
        sessions = document.get("sessions", _MISSING)
        if not isinstance(sessions, list):
            self.fail("sessions", f"expected a list of sessions, got {_describe(sessions)}", None)
            return []
        result: Exported = []
        seen: set[str] = set()
        for i, item in enumerate(sessions):
            where = f"sessions[{i}]"
            session = self._session(item, where, None, _SESSION_FIELDS | {"messages"}, seen)
            messages: list[StoredMessage] = []
            raw_messages = item.get("messages", []) if isinstance(item, dict) else []
            if not isinstance(raw_messages, list):
                self.fail(f"{where}.messages", f"expected a list of messages, got {_describe(raw_messages)}", None)
                raw_messages = []
            for j, raw in enumerate(raw_messages):
                stored = self._message(raw, f"{where}.messages[{j}]", None, _MESSAGE_FIELDS, messages)
                if stored is not None:
                    messages.append(stored)
            if session is not None:
                result.append((session, messages))
        return result

    def read_jsonl(self, text: str) -> Exported:
        result: dict[str, tuple[Session, list[StoredMessage]]] = {}
        seen: set[str] = set()
        headers = 0
        # Only "\n" ends a record: str.splitlines would also split at U+2028 and friends, which
        # json.dumps leaves unescaped inside strings.
        for number, line in enumerate(text.split("\n"), start=1):
            if len(self.problems) >= _MAX_PROBLEMS:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                self.fail("", f"not valid JSON: {exc.msg} (column {exc.colno})", number)
                headers = headers or 1  # a broken first line is reported once, as what it is
                continue
            kind = record.get("type") if isinstance(record, dict) else None
            if kind == "header":
                headers += 1
                if headers > 1:
                    self.fail("type", "a second header line (the header comes once, first)", number)
                self._header(record, number, {"type", "format", "version"})
                continue
            if headers == 0:
                headers = 1
                self.fail("type", 'the first line must be the header {"type": "header", ...}', number)
            if kind == "session":
                session = self._session(record, "session", number, _SESSION_FIELDS | {"type"}, seen)
                if session is not None:
                    result[session.id] = (session, [])
            elif kind == "message":
                owner = record.get("session_id")
                if not isinstance(owner, str) or owner not in seen:
                    self.fail("message.session_id", f"no session line with id {owner!r} comes before it", number)
                    continue
                if owner not in result:
                    continue  # the session line itself was bad and is already reported
                messages = result[owner][1]
                stored = self._message(record, "message", number, _MESSAGE_FIELDS | {"type", "session_id"}, messages)
                if stored is not None:
                    messages.append(stored)
            else:
                self.fail("type", f"expected 'header', 'session' or 'message', got {_describe(kind)}", number)
        if headers == 0:
            self.fail("", "the file is empty", None)
        return list(result.values())

    def _header(self, record: dict[str, Any], line: int | None, allowed: set[str]) -> None:
        self._unknown(record, "", line, allowed)
        name = record.get("format", _MISSING)
        if name != FORMAT_NAME:
            self.fail("format", f"expected {FORMAT_NAME!r}, got {_describe(name)}", line)
        version = record.get("version", _MISSING)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            self.fail("version", f"expected a version number, got {_describe(version)}", line)
        elif version > FORMAT_VERSION:
            self.fail(
                "version",
                f"version {version} was written by a newer NanoBrain; this one reads up to {FORMAT_VERSION}",
                line,
            )

    def _unknown(self, record: dict[str, Any], prefix: str, line: int | None, allowed: set[str]) -> None:
        for key in record:
            if key not in allowed:
                self.fail(f"{prefix}{key}", f"unknown field (expected one of {', '.join(sorted(allowed))})", line)

    def _get(self, record: dict[str, Any], key: str, where: str, line: int | None, expect: str,
             *, required: bool = False, default: Any = None) -> Any:  # fmt: skip
        path = f"{where}.{key}"
        value = record.get(key, _MISSING)
        if value is _MISSING:
            if required:
                self.fail(path, f"missing (expected {expect})", line)
            return default
        nullable = expect.endswith(" or null")
        if value is None and nullable:
            return None
        kind = expect.removesuffix(" or null")
        checked = _CHECKS[kind](value)
        if checked is _MISSING:
            self.fail(path, f"expected {expect}, got {_describe(value)}", line)
            return default
        return checked

    def _session(self, record: Any, where: str, line: int | None, allowed: set[str], seen: set[str]) -> Session | None:
        if not isinstance(record, dict):
            self.fail(where, f"expected a session object, got {_describe(record)}", line)
            return None
        before = len(self.problems)
        self._unknown(record, f"{where}.", line, allowed)
        sid = self._get(record, "id", where, line, "a non-empty string", required=True)
        if sid is not None and sid in seen:
            self.fail(f"{where}.id", f"session {sid!r} appears twice in the file", line)
        created = self._get(record, "created_at", where, line, "an ISO-8601 timestamp", default=self.now)
        session = Session(
            id=sid or "",
            created_at=created,
            updated_at=self._get(record, "updated_at", where, line, "an ISO-8601 timestamp", default=created),
            user_id=self._get(record, "user_id", where, line, "a string or null"),
            title=self._get(record, "title", where, line, "a string or null"),
            expires_at=self._get(record, "expires_at", where, line, "an ISO-8601 timestamp or null"),
            metadata=self._get(record, "metadata", where, line, "an object", default={}),
        )
        if sid is not None:
            seen.add(sid)
        return session if len(self.problems) == before else None

    def _message(
        self, record: Any, where: str, line: int | None, allowed: set[str], previous: list[StoredMessage]
    ) -> StoredMessage | None:
        if not isinstance(record, dict):
            self.fail(where, f"expected a message object, got {_describe(record)}", line)
            return None
        before = len(self.problems)
        self._unknown(record, f"{where}.", line, allowed)
        last = previous[-1].seq if previous else 0
        seq = self._get(record, "seq", where, line, "a whole number >= 1", default=last + 1)
        if seq is not None and seq <= last:
            self.fail(f"{where}.seq", f"expected a number above the previous message's seq {last}, got {seq}", line)
        role = self._get(record, "role", where, line, ROLE_EXPECTED, required=True)
        content = self._get(record, "content", where, line, "a string", required=True)
        calls = self._get(record, "tool_calls", where, line, TOOL_CALLS_EXPECTED, default=[])
        usage = self._get(record, "usage", where, line, USAGE_EXPECTED + " or null")
        message = Message(
            role or "user",
            content or "",
            tuple(calls or ()),
            tool_call_id=self._get(record, "tool_call_id", where, line, "a string or null"),
            name=self._get(record, "name", where, line, "a string or null"),
            is_error=self._get(record, "is_error", where, line, "true or false", default=False),
        )
        stored = StoredMessage(
            message,
            0,
            "",
            seq or 0,
            self._get(record, "created_at", where, line, "an ISO-8601 timestamp", default=self.now),
            self._get(record, "model", where, line, "a string or null"),
            usage,
            self._get(record, "metadata", where, line, "an object", default={}),
        )
        return stored if len(self.problems) == before else None


def _as_timestamp(value: Any) -> Any:
    if not isinstance(value, str):
        return _MISSING
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return _MISSING
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _as_tool_calls(value: Any) -> Any:
    if not isinstance(value, list):
        return _MISSING
    calls = []
    for call in value:
        if not (
            isinstance(call, dict)
            and set(call) == {"id", "name", "arguments"}
            and isinstance(call["id"], str)
            and isinstance(call["name"], str)
            and isinstance(call["arguments"], dict)
        ):
            return _MISSING
        calls.append(ToolCall(call["id"], call["name"], call["arguments"]))
    return calls


def _as_usage(value: Any) -> Any:
    counts = ("prompt_tokens", "completion_tokens")
    if isinstance(value, dict) and set(value) == set(counts):
        numbers = [value[k] for k in counts]
        if all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
            return Usage(*numbers)
    return _MISSING


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "a string": lambda v: v if isinstance(v, str) else _MISSING,
    "a non-empty string": lambda v: v if isinstance(v, str) and v else _MISSING,
    "an object": lambda v: v if isinstance(v, dict) else _MISSING,
    "true or false": lambda v: v if isinstance(v, bool) else _MISSING,
    "a whole number >= 1": lambda v: v if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else _MISSING,
    ROLE_EXPECTED: lambda v: v if v in ROLES else _MISSING,
    "an ISO-8601 timestamp": _as_timestamp,
    TOOL_CALLS_EXPECTED: _as_tool_calls,
    USAGE_EXPECTED: _as_usage,
}
