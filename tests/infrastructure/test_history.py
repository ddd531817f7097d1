"""ConversationHistory on SQLite and PostgreSQL: every field kept, paging, ordering under concurrent
writers, ranked full-text search, encryption hook, and a history shared between processes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import sys
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pytest
from sqlalchemy import text

from nanobrain.infrastructure.data.database import Database, DatabaseError
from nanobrain.infrastructure.data.export import ExportManager
from nanobrain.infrastructure.data.history import ConversationHistory, HistoryEntry, HistoryError, SearchUnavailable
from nanobrain.llm.messages import Message, ToolCall, Usage

FIXED = datetime(2025, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)


def twin(database: Database) -> Database:
    """A second, independent Database object (own engine and pool) on the same data."""
    return Database(database.url, schema=database.schema)


async def test_every_field_is_stored_and_readable_by_another_connection(database: Database) -> None:
    history = ConversationHistory(database, now=lambda: FIXED)
    call = ToolCall("call-1", "weather", {"city": "Zürich", "days": [1, 2], "nested": {"deep": None}})
    first = await history.append("s1", Message.user("Wie wird das Wetter?"), metadata={"client": "cli"})
    second = await history.append(
        "s1", Message.assistant("", (call,)), model="gpt-x", usage=Usage(120, 15), metadata={"latency_ms": 812}
    )
    third = await history.append("s1", Message.tool(call, "timeout", is_error=True))
    assert [first.seq, second.seq, third.seq] == [1, 2, 3]
    assert second.usage == Usage(120, 15) and second.model == "gpt-x" and second.created_at == FIXED

    # `append` returned, so the rows are committed: an independent engine sees them.
    other = twin(database)
    try:
        stored = await ConversationHistory(other).messages("s1")
    finally:
        await other.aclose()
    assert stored == [first, second, third]
    assert stored[1].to_message() == Message.assistant("", (call,))
    assert stored[2].message.is_error and stored[2].message.name == "weather"
    assert stored[2].message.tool_call_id == "call-1"
    assert stored[0].usage is None and stored[0].metadata == {"client": "cli"}
    assert stored[1].created_at == FIXED  # microseconds survive


async def test_append_many_is_one_block_of_consecutive_messages(database: Database) -> None:
    history = ConversationHistory(database)
    await history.append("s", Message.system("be brief"))
    block = await history.append_many("s", [Message.user("a"), Message.assistant("b"), Message.user("c")], model="m")
    assert [m.seq for m in block] == [2, 3, 4]
    assert [m.content for m in await history.messages("s")] == ["be brief", "a", "b", "c"]
    assert [m.id for m in block] == [m.id for m in (await history.messages("s"))[1:]]
    assert await history.append_many("s", []) == []
    assert await history.count("s") == 4


async def test_append_entries_keeps_each_messages_model_usage_and_metadata(database: Database) -> None:
    history = ConversationHistory(database)
    call = ToolCall("c1", "search", {"q": "x"})
    turn = [
        HistoryEntry(Message.user("find x")),
        HistoryEntry(Message.assistant("", (call,)), model="m1", metadata={"agent": "a"}),
        HistoryEntry(Message.tool(call, "found"), metadata={"agent": "a"}),
        HistoryEntry(Message.assistant("x is here"), model="m1", usage=Usage(50, 9), metadata={"agent": "a"}),
    ]
    stored = await history.append_entries("s", turn)
    assert [m.seq for m in stored] == [1, 2, 3, 4]
    again = await history.messages("s")
    assert again == stored
    assert [(m.model, m.usage, m.metadata) for m in again] == [
        (None, None, {}),
        ("m1", None, {"agent": "a"}),
        (None, None, {"agent": "a"}),
        ("m1", Usage(50, 9), {"agent": "a"}),
    ]
    # One transaction: a bad entry stores none of the turn.
    with pytest.raises(HistoryError, match="message metadata must be JSON-serializable"):
        await history.append_entries(
            "s", [HistoryEntry(Message.user("ok")), HistoryEntry(Message.user("no"), metadata={"x": object()})]
        )
    assert await history.count("s") == 4


async def test_replace_rewrites_a_message_in_place_and_appends_the_rest(database: Database) -> None:
    history = ConversationHistory(database)
    await history.append("s", Message.user("count: a b"))
    draft = await history.append("s", Message.assistant("Let me"), metadata={"interrupted": True})
    grown = await history.replace("s", draft.seq, [HistoryEntry(Message.assistant("Let me count"), model="m")])
    assert [(m.seq, m.id) for m in grown] == [(draft.seq, draft.id)]
    call = ToolCall("c1", "count", {"text": "a b"})
    final = await history.replace(
        "s",
        draft.seq,
        [
            HistoryEntry(Message.assistant("Let me count", (call,)), model="m"),
            HistoryEntry(Message.tool(call, "2")),
            HistoryEntry(Message.assistant("Two words."), model="m", usage=Usage(9, 3)),
        ],
    )
    stored = await history.messages("s")
    assert stored == [stored[0], *final]
    assert [(m.seq, m.role, m.content, m.metadata) for m in stored] == [
        (1, "user", "count: a b", {}),
        (2, "assistant", "Let me count", {}),  # the interrupted mark went with the draft
        (3, "tool", "2", {}),
        (4, "assistant", "Two words.", {}),
    ]
    assert stored[1].message.tool_calls == (call,) and stored[3].usage == Usage(9, 3)
    assert sorted(hit.message.seq for hit in await history.search("count", session_id="s")) == [1, 2]
    with pytest.raises(HistoryError, match="has no message 9 to replace"):
        await history.replace("s", 9, [HistoryEntry(Message.assistant("x"))])
    assert await history.count("s") == 4


async def test_replaced_messages_are_sealed_to_their_place(database: Database) -> None:
    from nanobrain.infrastructure.security.encryption import Encryptor, generate_key

    history = ConversationHistory(database, encryptor=Encryptor(generate_key()))
    await history.append("s", Message.user("secret question"))
    draft = await history.append("s", Message.assistant("secret an"))
    await history.replace(
        "s", draft.seq, [HistoryEntry(Message.assistant("secret answer")), HistoryEntry(Message.user("more"))]
    )
    assert [m.content for m in await history.messages("s")] == ["secret question", "secret answer", "more"]
    assert not any("secret" in raw for raw in await _raw_contents(database))


async def test_paging_forward_backward_and_latest(database: Database) -> None:
    history = ConversationHistory(database)
    await history.append_many("s", [Message.user(f"m{i}") for i in range(1, 26)])
    await history.append("other", Message.user("not mine"))

    def seqs(page: list) -> list[int]:
        return [m.seq for m in page]

    assert seqs(await history.messages("s", after_seq=0, limit=10)) == list(range(1, 11))
    assert seqs(await history.messages("s", after_seq=10, limit=10)) == list(range(11, 21))
    assert seqs(await history.messages("s", after_seq=20, limit=10)) == list(range(21, 26))
    assert await history.messages("s", after_seq=25, limit=10) == []
    # Backward paging returns the messages just before the cursor, oldest first.
    assert seqs(await history.messages("s", before_seq=26, limit=10)) == list(range(16, 26))
    assert seqs(await history.messages("s", before_seq=16, limit=10)) == list(range(6, 16))
    assert seqs(await history.messages("s", before_seq=6, limit=10)) == list(range(1, 6))
    # Neither cursor: the latest messages (a chat's recent context).
    assert seqs(await history.messages("s", limit=3)) == [23, 24, 25]
    assert seqs(await history.messages("s", after_seq=5, before_seq=9)) == [6, 7, 8]
    assert seqs(await history.messages("s")) == list(range(1, 26))
    assert await history.messages("s", limit=0) == []
    assert await history.count("s") == 25
    assert await history.count("nobody") == 0 and await history.messages("nobody") == []
    found = await history.get("s", 7)
    assert found is not None and found.content == "m7"
    assert await history.get("s", 99) is None
    with pytest.raises(HistoryError, match="limit must be >= 0"):
        await history.messages("s", limit=-1)


async def test_concurrent_writers_get_gapless_order_and_keep_their_own_order(database: Database) -> None:
    writers, per_writer = 6, 25
    # Three independent engines (as separate processes would have) plus the fixture's own pool.
    engines = [database, twin(database), twin(database)]
    histories = [ConversationHistory(engines[k % len(engines)]) for k in range(writers)]
    await histories[0].append("shared", Message.system("start"))

    async def writer(k: int) -> None:
        for i in range(per_writer):
            if i % 5 == 4:
                await histories[k].append_many(
                    "shared", [Message.user(f"w{k}-{i:03d}a"), Message.assistant(f"w{k}-{i:03d}b")]
                )
            else:
                await histories[k].append("shared", Message.user(f"w{k}-{i:03d}"))

    try:
        await asyncio.gather(*(writer(k) for k in range(writers)))
    finally:
        for engine in engines[1:]:
            await engine.aclose()

    stored = await ConversationHistory(database).messages("shared")
    per_writer_messages = per_writer + per_writer // 5
    total = 1 + writers * per_writer_messages
    assert [m.seq for m in stored] == list(range(1, total + 1))
    contents = [m.content for m in stored]
    assert len(set(contents)) == total
    for k in range(writers):
        mine = [c for c in contents if c.startswith(f"w{k}-")]
        assert mine == sorted(mine) and len(mine) == per_writer_messages
    # A block from append_many stays together.
    for a, b in itertools.pairwise(stored):
        if a.content.endswith("a"):
            assert b.content == a.content[:-1] + "b"
    assert await ConversationHistory(database).count("shared") == total


async def test_one_history_shared_by_many_tasks(database: Database) -> None:
    history = ConversationHistory(database)
    stored = await asyncio.gather(*(history.append("s", Message.user(f"task {i}")) for i in range(30)))
    assert sorted(m.seq for m in stored) == list(range(1, 31))
    assert {m.seq: m.content for m in await history.messages("s")} == {m.seq: m.content for m in stored}
    await history.aclose()
    assert (await history.append("s", Message.user("after aclose"))).seq == 31


async def test_history_outlives_a_closed_and_reopened_database(database: Database) -> None:
    async with ConversationHistory(database) as history:
        await history.append("s", Message.user("before"))
        await database.aclose()  # disposes the engine, and with it the connection the history kept
        assert history._parking.connection is None
        assert (await history.append("s", Message.user("after"))).seq == 2
        assert [m.content for m in await history.messages("s")] == ["before", "after"]


async def test_a_kept_connection_the_server_closed_is_replaced(postgres_db: Database) -> None:
    history = ConversationHistory(postgres_db)
    await history.append("s", Message.user("one"))
    driver = history._parking.driver
    async with postgres_db.connect() as connection:
        await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": driver.get_server_pid()})
    for _ in range(500):  # wait for the client to see the closed socket
        if driver.is_closed():
            break
        await asyncio.sleep(0.01)
    assert driver.is_closed()
    assert (await history.append("s", Message.user("two"))).seq == 2
    await history.aclose()


async def test_an_unreachable_database_is_a_clear_error() -> None:
    for schema in (None, "nbtest_unreachable"):
        db = Database("postgresql+asyncpg://postgres@127.0.0.1:1/test", schema=schema, connect_timeout=2)
        try:
            with pytest.raises(DatabaseError, match="cannot reach the database at postgresql"):
                await ConversationHistory(db).append("s", Message.user("hi"))
        finally:
            await db.aclose()


async def test_search_ranks_better_matches_first(database: Database) -> None:
    history = ConversationHistory(database)
    await history.append("a", Message.user("The weather is nice today, let us talk about something else"))
    weak = await history.append(
        "a",
        Message.assistant(
            "A long answer that mentions database tuning only once among many other words about gardening, "
            "cooking, travelling, painting, music, football, chess, knitting and astronomy"
        ),
    )
    strong = await history.append("a", Message.user("database tuning: tuning the database, database tuning tips"))
    other = await history.append("b", Message.user("database tuning in another session"))
    await history.append("a", Message.user("only the database is mentioned here"))

    hits = await history.search("database tuning")
    assert [h.message.id for h in hits][:1] == [strong.id]
    assert {h.message.id for h in hits} == {strong.id, weak.id, other.id}  # every word must match
    assert hits[0].score > hits[-1].score
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))

    scoped = await history.search("database tuning", session_id="a")
    assert [h.message.id for h in scoped] == [strong.id, weak.id]
    assert len(await history.search("database tuning", limit=1)) == 1
    # Stemming: "tunes" and "tuned" find "tuning".
    assert {h.message.id for h in await history.search("tuned databases", session_id="b")} == {other.id}
    # Words only: operators and quotes in user text are not query syntax, and nothing matches nothing.
    assert {h.message.id for h in await history.search('"database* -(tuning:')} == {strong.id, weak.id, other.id}
    assert await history.search("?!") == []
    assert await history.search("zeppelin") == []


async def test_bad_messages_are_clear_errors_and_store_nothing(database: Database) -> None:
    history = ConversationHistory(database)
    with pytest.raises(HistoryError, match="role must be one of system, user, assistant, tool, got 'robot'"):
        await history.append("s", Message("robot", "beep"))  # type: ignore[arg-type]
    with pytest.raises(HistoryError, match="message metadata must be JSON-serializable"):
        await history.append("s", Message.user("hi"), metadata={"when": object()})
    with pytest.raises(HistoryError, match="tool call arguments must be JSON-serializable"):
        await history.append("s", Message.assistant("", (ToolCall("c", "f", {"x": {1, 2}}),)))
    with pytest.raises(HistoryError, match="session_id must be a non-empty string"):
        await history.append("", Message.user("hi"))
    with pytest.raises(HistoryError, match="expected a Message"):
        await history.append("s", "hi")  # type: ignore[arg-type]
    assert await history.count("s") == 0


class XorEncryptor:
    """A stand-in with the encryptor interface (not secure): tags ciphertext with its key byte and
    a digest of the associated data, which must match on decrypt."""

    def __init__(self, key: int, *old_keys: int) -> None:
        self.key = key
        self.known = {key, *old_keys}

    def encrypt(self, data: bytes, associated_data: bytes = b"") -> bytes:
        tag = hashlib.sha256(associated_data).digest()[:4]
        return bytes([self.key]) + tag + bytes(b ^ self.key for b in data)

    def decrypt(self, data: bytes, associated_data: bytes = b"") -> bytes:
        if data[0] not in self.known:
            raise ValueError("wrong key")
        if data[1:5] != hashlib.sha256(associated_data).digest()[:4]:
            raise ValueError("wrong place")
        return bytes(b ^ data[0] for b in data[5:])


async def _raw_contents(database: Database) -> list[str]:
    async with database.connect() as connection:
        rows = await connection.execute(text("SELECT content FROM history_messages ORDER BY id"))
        return [row[0] for row in rows]


async def test_encrypted_history_stores_ciphertext_and_refuses_search(database: Database) -> None:
    history = ConversationHistory(database, encryptor=XorEncryptor(7))
    await history.append("s", Message.user("my secret plan"))
    await history.append("s", Message.assistant("keep the secret"))
    assert [m.content for m in await history.messages("s")] == ["my secret plan", "keep the secret"]
    assert not any("secret" in raw for raw in await _raw_contents(database))
    with pytest.raises(SearchUnavailable, match="unavailable on an encrypted history"):
        await history.search("secret")
    # The index never saw the plaintext: a history without the encryptor finds nothing.
    assert await ConversationHistory(database).search("secret") == []
    with pytest.raises(HistoryError, match=r"message 1 of session 's' .* is encrypted: open the history with"):
        await ConversationHistory(database).messages("s")
    with pytest.raises(HistoryError, match=r"cannot decrypt message 1 of session 's'.*wrong key"):
        await ConversationHistory(database, encryptor=XorEncryptor(9)).messages("s")


async def test_reencrypt_rotates_the_key_and_can_encrypt_old_plaintext(database: Database) -> None:
    await ConversationHistory(database).append("s", Message.user("written before encryption"))
    await ConversationHistory(database, encryptor=XorEncryptor(7)).append("s", Message.user("under key 7"))
    rotated = ConversationHistory(database, encryptor=XorEncryptor(9, 7))
    assert await rotated.reencrypt() == 1
    assert await rotated.reencrypt(include_plaintext=True, batch_size=1) == 2
    new_key_only = ConversationHistory(database, encryptor=XorEncryptor(9))
    assert [m.content for m in await new_key_only.messages("s")] == ["written before encryption", "under key 7"]
    assert not any("written" in raw for raw in await _raw_contents(database))
    with pytest.raises(HistoryError, match="reencrypt needs a history opened with an encryptor"):
        await ConversationHistory(database).reencrypt()


async def test_history_with_the_aes_gcm_encryptor_and_key_rotation(database: Database) -> None:
    from nanobrain.infrastructure.security.encryption import DecryptionError, Encryptor, generate_key

    old_key, new_key = generate_key(), generate_key()
    history = ConversationHistory(database, encryptor=Encryptor(old_key))
    await history.append("s", Message.user("wire the money on friday"))
    assert "money" not in (await _raw_contents(database))[0]
    with pytest.raises(DecryptionError, match="the key id does not match"):
        await ConversationHistory(database, encryptor=Encryptor(new_key)).messages("s")

    rotating = ConversationHistory(database, encryptor=Encryptor(new_key, keys=[old_key]))
    await rotating.append("s", Message.user("already under the new key"))
    assert await rotating.reencrypt() == 1  # only the message sealed with the old key is rewritten
    assert await rotating.reencrypt() == 0
    new_only = ConversationHistory(database, encryptor=Encryptor(new_key))
    assert [m.content for m in await new_only.messages("s")] == [
        "wire the money on friday",
        "already under the new key",
    ]
    await history.aclose()
    await rotating.aclose()
    await new_only.aclose()


async def _contents(database: Database) -> dict[tuple[str, int], str]:
    async with database.connect() as connection:
        rows = await connection.execute(text("SELECT session_id, seq, content FROM history_messages"))
        return {(row[0], row[1]): row[2] for row in rows}


async def _overwrite(database: Database, session_id: str, seq: int, content: str, *, encrypted: bool = True) -> None:
    async with database.begin() as connection:
        await connection.execute(
            text("UPDATE history_messages SET content = :c, encrypted = :e WHERE session_id = :s AND seq = :q"),
            {"c": content, "e": encrypted, "s": session_id, "q": seq},
        )


async def test_an_encrypted_message_moved_to_another_session_or_position_does_not_decrypt(database: Database) -> None:
    from nanobrain.infrastructure.security.encryption import DecryptionError, Encryptor, generate_key

    history = ConversationHistory(database, encryptor=Encryptor(generate_key()))
    await history.append("alice", Message.user("alice's secret"))
    await history.append_many("alice", [Message.assistant("noted"), Message.user("third")])
    await history.append("mallory", Message.user("mallory's own"))
    stored = await _contents(database)
    assert all(content.startswith("v2:") for content in stored.values())

    # Someone with write access to the database copies alice's ciphertext into mallory's session...
    await _overwrite(database, "mallory", 1, stored[("alice", 1)])
    with pytest.raises(DecryptionError, match=r"cannot decrypt message 1 of session 'mallory'.*another record"):
        await history.messages("mallory")
    # ...or swaps two messages of one session.
    await _overwrite(database, "alice", 3, stored[("alice", 2)])
    with pytest.raises(DecryptionError, match=r"cannot decrypt message 3 of session 'alice'"):
        await history.messages("alice")
    first = await history.get("alice", 1)
    assert first is not None and first.content == "alice's secret"
    await history.aclose()


async def test_rows_encrypted_before_binding_still_read_and_reencrypt_binds_them(database: Database) -> None:
    from nanobrain.infrastructure.security.encryption import DecryptionError, Encryptor, generate_key

    encryptor = Encryptor(generate_key())
    await ConversationHistory(database).append_many("old", [Message.user("one"), Message.user("two")])
    # What an older NanoBrain stored: the sealed text in base64, no associated data.
    for seq, words in ((1, "written long ago"), (2, "also old")):
        legacy = base64.b64encode(encryptor.encrypt(words.encode())).decode("ascii")
        await _overwrite(database, "old", seq, legacy)
    history = ConversationHistory(database, encryptor=encryptor)
    assert [m.content for m in await history.messages("old")] == ["written long ago", "also old"]

    assert await history.reencrypt() == 2  # same key, but not yet bound: rewritten
    assert await history.reencrypt() == 0
    stored = await _contents(database)
    assert stored[("old", 1)].startswith("v2:")
    assert [m.content for m in await history.messages("old")] == ["written long ago", "also old"]
    await _overwrite(database, "old", 2, stored[("old", 1)])
    with pytest.raises(DecryptionError, match="another record"):
        await history.messages("old")
    await history.aclose()


async def test_an_encryptor_without_associated_data_is_refused(sqlite_db: Database) -> None:
    class Unbound:
        def encrypt(self, data: bytes) -> bytes:
            return data

        def decrypt(self, data: bytes) -> bytes:
            return data

    with pytest.raises(HistoryError, match=r"\(Unbound\) needs encrypt\(data, associated_data\)"):
        ConversationHistory(sqlite_db, encryptor=Unbound())


async def test_encrypted_sessions_survive_export_and_import_under_a_new_id(database: Database) -> None:
    from nanobrain.infrastructure.security.encryption import Encryptor, generate_key

    history = ConversationHistory(database, encryptor=Encryptor(generate_key()))
    await history.append_many("s", [Message.user("question"), Message.assistant("answer")])
    manager = ExportManager(history)
    exported = StringIO()
    await manager.export(None, exported, format="json")
    # The id is taken, so the import stores the session under a new one: the seal must follow it.
    (new_id,) = await manager.import_file(StringIO(exported.getvalue()), format="json")
    assert new_id != "s"
    assert [m.content for m in await history.messages(new_id)] == ["question", "answer"]
    await history.aclose()


WRITER = """
import asyncio, sys
from nanobrain.infrastructure.data.database import Database, DatabaseError
from nanobrain.infrastructure.data.history import ConversationHistory
from nanobrain.infrastructure.data.sessions import SessionManager
from nanobrain.llm.messages import Message, ToolCall, Usage

async def main(url, schema):
    db = Database(url, schema=schema or None)
    await SessionManager(db).create(user_id="ada", title="Written elsewhere", session_id="cross")
    history = ConversationHistory(db)
    call = ToolCall("c1", "lookup", {"topic": "postgres"})
    await history.append("cross", Message.user("How do I tune a PostgreSQL database?"))
    await history.append("cross", Message.assistant("", (call,)), model="m1", usage=Usage(12, 3))
    await history.append("cross", Message.tool(call, "shared_buffers and work_mem matter"))
    await history.append("cross", Message.assistant("Raise shared_buffers first."), model="m1",
                         usage=Usage(30, 7), metadata={"latency_ms": 120})
    await db.aclose()
    print("written", flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_history_written_by_another_process_is_read_searched_and_exported(
    database: Database, tmp_path: Path
) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        database.url,
        database.schema or "",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    assert out.decode().strip() == "written"

    history = ConversationHistory(database)
    stored = await history.messages("cross")
    assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert stored[1].message.tool_calls == (ToolCall("c1", "lookup", {"topic": "postgres"}),)
    assert stored[3].usage == Usage(30, 7) and stored[3].metadata == {"latency_ms": 120}

    hits = await history.search("shared_buffers")
    assert [h.message.seq for h in hits] == [3, 4] or [h.message.seq for h in hits] == [4, 3]
    assert [h.message.seq for h in await history.search("tune postgresql")] == [1]

    exported = tmp_path / "cross.jsonl"
    assert await ExportManager(history).export(["cross"], exported) == 4
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert lines[1]["title"] == "Written elsewhere" and lines[1]["user_id"] == "ada"
    assert [line["content"] for line in lines[2:]] == [m.content for m in stored]


async def test_an_encrypted_message_replaced_as_it_grows_stays_bound_to_its_place(database: Database) -> None:
    """The chat checkpoints a streamed answer with `replace`: each version, and the messages
    appended after it, must be sealed for their own session and position."""
    from nanobrain.infrastructure.security.encryption import Encryptor, generate_key

    history = ConversationHistory(database, encryptor=Encryptor(generate_key()))
    first = await history.append("s", Message.user("question"))
    partial = await history.append("s", Message.assistant("the answer so"))
    await history.replace("s", partial.seq, [HistoryEntry(Message.assistant("the answer so far, in full")),
                                             HistoryEntry(Message.user("a follow-up"))])
    stored = await history.messages("s")
    assert [(m.seq, m.content) for m in stored] == [
        (first.seq, "question"),
        (partial.seq, "the answer so far, in full"),
        (partial.seq + 1, "a follow-up"),
    ]
    assert all("answer" not in content for content in (await _contents(database)).values())
    await history.aclose()
