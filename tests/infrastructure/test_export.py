"""ExportManager on SQLite and PostgreSQL: lossless JSON/JSONL round trip, CSV and Markdown output,
and imports of bad files that name the line or path and field and import nothing."""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.data.export import CSV_COLUMNS, ExportError, ExportManager, ImportFileError
from nanobrain.infrastructure.data.history import ConversationHistory, HistoryError
from nanobrain.infrastructure.data.sessions import SessionManager, SessionNotFound
from nanobrain.llm.messages import Message, ToolCall, Usage


class Ticker:
    """A clock that moves one odd step per reading, so every timestamp differs down to the microsecond."""

    def __init__(self) -> None:
        self.now = datetime(2025, 5, 6, 7, 8, 9, 101112, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1, microseconds=7)
        return self.now


async def fill(database: Database) -> list[str]:
    clock = Ticker()
    sessions = SessionManager(database, now=clock)
    history = ConversationHistory(database, now=clock)
    first = await sessions.create(
        user_id="ada", title='Trip, "planning"', ttl=3600, metadata={"tags": ["travel", "ünïcode ✓"], "n": 1.5}
    )
    call = ToolCall("call_1", "search", {"query": "trains to Zürich", "limit": 3, "filters": {"night": True}})
    await history.append(first.id, Message.system("You plan trips.\nBe brief.\r\nSeparators: \u2028 \u2029 \x85 \x0c."))
    await history.append(first.id, Message.user('Trains, please: cheap, fast; "direct"'), metadata={"ip": None})
    await history.append(first.id, Message.assistant("", (call,)), model="small-1", usage=Usage(321, 45))
    await history.append(first.id, Message.tool(call, "no connection", is_error=True), metadata={"retry": 2})
    await history.append(first.id, Message.assistant("Take the 7:04.\n\n| a | b |"), model="small-1", usage=Usage(0, 0))
    second = await sessions.create(title=None)
    await history.append_many(second.id, [Message.user(""), Message.assistant("empty question?")])
    return [first.id, second.id]


@pytest.fixture
async def fresh(database: Database, tmp_path: Path) -> AsyncIterator[Database]:
    """An empty database of the same kind as `database`."""
    if database.dialect == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / f'fresh-{uuid.uuid4().hex}.db'}")
        yield db
        await db.aclose()
        return
    db = Database(database.url, schema=f"nbtest_{uuid.uuid4().hex[:12]}")
    yield db
    await db.drop_schema()
    await db.aclose()


@pytest.mark.parametrize("extension", ["json", "jsonl"])
async def test_round_trip_is_lossless(database: Database, fresh: Database, tmp_path: Path, extension: str) -> None:
    ids = await fill(database)
    original = tmp_path / f"original.{extension}"
    assert await ExportManager(ConversationHistory(database)).export(ids, original) == 7

    target = ExportManager(ConversationHistory(fresh))
    assert await target.import_file(original) == ids
    again = tmp_path / f"again.{extension}"
    await target.export(ids, again)
    assert again.read_bytes() == original.read_bytes()

    # The same objects come back, not only the same text.
    source_history, target_history = ConversationHistory(database), ConversationHistory(fresh)
    for sid in ids:
        before = [
            (m.message, m.seq, m.model, m.usage, m.metadata, m.created_at) for m in await source_history.messages(sid)
        ]
        after = [
            (m.message, m.seq, m.model, m.usage, m.metadata, m.created_at) for m in await target_history.messages(sid)
        ]
        assert before == after
        assert await SessionManager(fresh).get(sid) == await SessionManager(database).get(sid)
    # The imported history keeps working: numbering continues and search finds imported text.
    assert (await target_history.append(ids[0], Message.user("more"))).seq == 6
    assert [h.message.seq for h in await target_history.search("trains", session_id=ids[0])] == [2]


async def test_round_trip_across_databases_and_through_a_stream(database: Database, tmp_path: Path) -> None:
    ids = await fill(database)
    buffer = io.StringIO()
    await ExportManager(ConversationHistory(database)).export(None, buffer, "jsonl")
    lite = Database(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
    try:
        manager = ExportManager(ConversationHistory(lite))
        assert await manager.import_file(io.StringIO(buffer.getvalue()), format="jsonl") == ids
        second = io.StringIO()
        await manager.export(None, second, "jsonl")
    finally:
        await lite.aclose()
    assert second.getvalue() == buffer.getvalue()


async def test_csv_has_a_header_and_one_row_per_message(database: Database, tmp_path: Path) -> None:
    ids = await fill(database)
    path = tmp_path / "out.csv"
    await ExportManager(ConversationHistory(database)).export(ids, path)
    rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8"), newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    records = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert len(records) == 7
    assert [(r["session_id"], r["seq"]) for r in records] == [(ids[0], str(i)) for i in range(1, 6)] + [
        (ids[1], "1"),
        (ids[1], "2"),
    ]
    assert records[1]["content"] == 'Trains, please: cheap, fast; "direct"'
    assert records[0]["content"] == "You plan trips.\nBe brief.\r\nSeparators: \u2028 \u2029 \x85 \x0c."
    assert json.loads(records[2]["tool_calls"])[0]["arguments"]["query"] == "trains to Zürich"
    assert (records[2]["model"], records[2]["prompt_tokens"], records[2]["completion_tokens"]) == (
        "small-1",
        "321",
        "45",
    )
    assert records[3]["is_error"] == "true" and records[3]["name"] == "search"
    assert records[0]["session_title"] == 'Trip, "planning"' and records[0]["user_id"] == "ada"


async def test_markdown_is_readable_with_roles(database: Database, tmp_path: Path) -> None:
    ids = await fill(database)
    path = tmp_path / "chat.md"
    await ExportManager(ConversationHistory(database)).export(ids[0], path)
    page = path.read_text(encoding="utf-8")
    assert page.startswith('# Trip, "planning"\n')
    assert f"- Session: `{ids[0]}`" in page and "- User: `ada`" in page
    for heading in ("## 1. system", "## 2. user", "## 3. assistant", "## 4. tool `search` (error)", "## 5. assistant"):
        assert heading in page
    assert "Tool call `search` (`call_1`)" in page and '"query": "trains to Zürich"' in page
    assert "model `small-1` · 321 prompt + 45 completion tokens" in page
    assert "Take the 7:04." in page


async def test_format_choice_and_export_errors(database: Database, tmp_path: Path) -> None:
    ids = await fill(database)
    manager = ExportManager(ConversationHistory(database))
    with pytest.raises(ExportError, match=r"cannot tell the format of .*out\.txt"):
        await manager.export(ids, tmp_path / "out.txt")
    await manager.export(ids, tmp_path / "out.txt", "markdown")
    assert (tmp_path / "out.txt").read_text().startswith("# Trip")
    with pytest.raises(ExportError, match="exporting to a stream needs format="):
        await manager.export(ids, io.StringIO())
    with pytest.raises(ExportError, match="unknown format 'xml'"):
        await manager.export(ids, io.StringIO(), "xml")  # type: ignore[arg-type]
    with pytest.raises(SessionNotFound, match="cannot export session 'ghost'"):
        await manager.export([ids[0], "ghost"], tmp_path / "partial.json")
    assert not (tmp_path / "partial.json").exists()
    assert [name for name in os.listdir(tmp_path) if name.startswith(".")] == []  # no temp file left behind
    with pytest.raises(ExportError, match="import reads json, jsonl"):
        await manager.import_file(tmp_path / "out.txt", format="csv")
    with pytest.raises(ExportError, match=r"cannot read .*missing\.json"):
        await manager.import_file(tmp_path / "missing.json")


async def test_an_existing_session_id_gets_a_new_id_on_import(database: Database, tmp_path: Path) -> None:
    ids = await fill(database)
    path = tmp_path / "dump.json"
    history = ConversationHistory(database)
    manager = ExportManager(history)
    await manager.export(ids, path)
    new_ids = await manager.import_file(path)
    assert len(new_ids) == 2 and not set(new_ids) & set(ids)
    for old, new in zip(ids, new_ids, strict=True):
        assert [m.message for m in await history.messages(new)] == [m.message for m in await history.messages(old)]
    assert len(await SessionManager(database).list(limit=None, include_expired=True)) == 4


def _jsonl(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


HEADER = {"type": "header", "format": "nanobrain-history", "version": 1}
SESSION = {"type": "session", "id": "s1", "title": "t", "created_at": "2025-01-01T00:00:00+00:00"}


def message(**fields: object) -> dict:
    return {"type": "message", "session_id": "s1", "role": "user", "content": "hi", **fields}


async def _nothing_imported(database: Database) -> None:
    assert await SessionManager(database).list(limit=None, include_expired=True) == []


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([HEADER, SESSION, message(), message(role="robot")],
         r"bad\.jsonl:4: message\.role: expected one of system, user, assistant, tool, got a string \(\"robot\"\)"),
        ([HEADER, SESSION, message(seq=2), message(seq=2)],
         r"bad\.jsonl:4: message\.seq: expected a number above the previous message's seq 2, got 2"),
        ([HEADER, SESSION, message(usage={"prompt_tokens": -1, "completion_tokens": 2})],
         r"bad\.jsonl:3: message\.usage: expected \{\"prompt_tokens\": n, \"completion_tokens\": n\}"),
        ([HEADER, SESSION, message(tool_calls=[{"id": "c", "name": "f"}])],
         r"bad\.jsonl:3: message\.tool_calls: expected a list of"),
        ([HEADER, SESSION, message(created_at="yesterday")],
         r"bad\.jsonl:3: message\.created_at: expected an ISO-8601 timestamp, got a string"),
        ([HEADER, SESSION, message(colour="blue")], r"bad\.jsonl:3: message\.colour: unknown field"),
        ([HEADER, message()], r"bad\.jsonl:2: message\.session_id: no session line with id 's1' comes before it"),
        ([HEADER, SESSION, SESSION], r"bad\.jsonl:3: session\.id: session 's1' appears twice in the file"),
        ([SESSION, message()], r"bad\.jsonl:1: type: the first line must be the header"),
        ([{**HEADER, "version": 2}, SESSION], r"bad\.jsonl:1: version: version 2 was written by a newer NanoBrain"),
        ([{**HEADER, "format": "other"}, SESSION], r"bad\.jsonl:1: format: expected 'nanobrain-history'"),
        ([HEADER, {**SESSION, "id": 5}], r"bad\.jsonl:2: session\.id: expected a non-empty string, got a number"),
        ([HEADER, SESSION, {"type": "note"}], r"bad\.jsonl:3: type: expected 'header', 'session' or 'message'"),
    ],
)  # fmt: skip
async def test_bad_jsonl_names_line_and_field_and_imports_nothing(
    database: Database, tmp_path: Path, lines: list[dict], expected: str
) -> None:
    path = tmp_path / "bad.jsonl"
    # A good session comes first: it must not be imported either.
    good = {**SESSION, "id": "good"}
    text = _jsonl(lines[0]) + (_jsonl(good) if lines[0] is HEADER else "") + _jsonl(*lines[1:])
    if lines[0] is HEADER:  # the good session shifted every later line by one
        expected = _shift_line(expected)
    path.write_text(text)
    with pytest.raises(ImportFileError, match=expected) as raised:
        await ExportManager(ConversationHistory(database)).import_file(path)
    assert "not a valid history export (nothing was imported)" in str(raised.value)
    await _nothing_imported(database)


def _shift_line(pattern: str) -> str:
    prefix, rest = pattern.split(":", 1)
    number, tail = rest.split(":", 1)
    return f"{prefix}:{int(number) + 1}:{tail}"


async def test_broken_json_syntax_names_the_line(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(_jsonl(HEADER, SESSION) + '{"type": "message", "session_id": "s1",\n')
    with pytest.raises(ImportFileError, match=r"broken\.jsonl:3: not valid JSON: Expecting property name"):
        await ExportManager(ConversationHistory(database)).import_file(path)
    whole = tmp_path / "broken.json"
    whole.write_text('{\n  "format": "nanobrain-history",\n  "version": 1,\n  "sessions": [\n}')
    with pytest.raises(ImportFileError, match=r"broken\.json:5: not valid JSON"):
        await ExportManager(ConversationHistory(database)).import_file(whole)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ImportFileError, match="the file is empty"):
        await ExportManager(ConversationHistory(database)).import_file(tmp_path / "empty.jsonl")
    (tmp_path / "latin.json").write_bytes(b'{"x": "\xe9"}')
    with pytest.raises(ImportFileError, match=r"not UTF-8 text \(byte 7\)"):
        await ExportManager(ConversationHistory(database)).import_file(tmp_path / "latin.json")
    await _nothing_imported(database)


async def test_bad_json_names_the_path_of_every_problem(database: Database, tmp_path: Path) -> None:
    ids = await fill(database)
    manager = ExportManager(ConversationHistory(database))
    path = tmp_path / "edited.json"
    await manager.export(ids, path)
    document = json.loads(path.read_text())
    document["sessions"][1]["messages"][0]["usage"] = {"prompt_tokens": "many", "completion_tokens": 1}
    document["sessions"][0]["messages"][2]["tool_calls"][0]["arguments"] = "not an object"
    document["sessions"][0]["metadata"] = ["not", "an", "object"]
    document["sessions"][1]["messages"][1]["is_error"] = "no"
    document["sessions"][1]["id"] = "edited"
    path.write_text(json.dumps(document))
    with pytest.raises(ImportFileError) as raised:
        await manager.import_file(path)
    report = str(raised.value)
    assert "(4 problems)" in report
    assert "sessions[1].messages[0].usage: expected" in report
    assert "sessions[0].messages[2].tool_calls: expected a list of" in report
    assert "sessions[0].metadata: expected an object, got a list" in report
    assert "sessions[1].messages[1].is_error: expected true or false, got a string" in report
    assert await SessionManager(database).get("edited") is None


async def test_a_failure_while_writing_rolls_the_whole_import_back(database: Database, tmp_path: Path) -> None:
    ids = await fill(database)
    path = tmp_path / "dump.jsonl"
    await ExportManager(ConversationHistory(database)).export(ids, path)

    class FailsOnSixth:
        calls = 0

        def encrypt(self, data: bytes, associated_data: bytes = b"") -> bytes:
            self.calls += 1
            if self.calls == 6:
                raise HistoryError("encryption failed")
            return data

        def decrypt(self, data: bytes, associated_data: bytes = b"") -> bytes:
            return data

    lite = Database(f"sqlite+aiosqlite:///{tmp_path / 'target.db'}")
    try:
        with pytest.raises(HistoryError, match="encryption failed"):
            await ExportManager(ConversationHistory(lite, encryptor=FailsOnSixth())).import_file(path)
        # The first session (five messages) was written before the failure, and rolled back with it.
        await _nothing_imported(lite)
        assert await ConversationHistory(lite).count(ids[0]) == 0
    finally:
        await lite.aclose()
