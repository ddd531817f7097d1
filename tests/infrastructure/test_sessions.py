"""SessionManager on SQLite and PostgreSQL: lifecycle, listing, expiry with a fixed clock, preferences."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.data.history import ConversationHistory, HistoryError
from nanobrain.infrastructure.data.sessions import SessionExpired, SessionManager, SessionNotFound
from nanobrain.llm.messages import Message


class Clock:
    """Wall-clock time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def test_create_get_rename_touch_and_resume(database: Database) -> None:
    clock = Clock()
    sessions = SessionManager(database, now=clock)
    session = await sessions.create(user_id="ada", title="Plans", metadata={"channel": "web"})
    assert len(session.id) == 32 and session.created_at == clock.now and session.expires_at is None
    assert await sessions.get(session.id) == session

    clock.advance(5)
    renamed = await sessions.rename(session.id, "Better plans")
    assert renamed.title == "Better plans" and renamed.updated_at == clock.now
    assert renamed.created_at == session.created_at and renamed.metadata == {"channel": "web"}

    merged = await sessions.update_metadata(session.id, theme="dark")
    assert merged.metadata == {"channel": "web", "theme": "dark"}

    clock.advance(5)
    resumed = await sessions.resume(session.id)
    assert resumed.updated_at == clock.now and resumed.title == "Better plans"

    named = await sessions.create(session_id="chosen-id")
    assert named.id == "chosen-id"
    with pytest.raises(HistoryError, match="a session with id 'chosen-id' exists already"):
        await sessions.create(session_id="chosen-id")
    for missing in (sessions.rename("nope", "x"), sessions.touch("nope"), sessions.update_metadata("nope", a=1)):
        with pytest.raises(SessionNotFound, match="no session 'nope'"):
            await missing
    with pytest.raises(SessionNotFound, match="no session 'nope': it never existed or was deleted"):
        await sessions.resume("nope")
    assert await sessions.get("nope") is None


async def test_history_and_sessions_share_one_table(database: Database) -> None:
    sessions = SessionManager(database)
    history = ConversationHistory(database)
    session = await sessions.create(user_id="ada", title="Chat")
    await history.append(session.id, Message.user("hi"))
    await history.append(session.id, Message.assistant("hello"))
    again = await sessions.get(session.id)
    assert again is not None and again.message_count == 2 and again.title == "Chat"
    # Appending to an unknown id creates a bare session.
    await history.append("implicit", Message.user("hi"))
    implicit = await sessions.get("implicit")
    assert implicit is not None and implicit.user_id is None and implicit.message_count == 1


async def test_list_is_most_recent_first_per_user_and_limited(database: Database) -> None:
    clock = Clock()
    sessions = SessionManager(database, now=clock)
    history = ConversationHistory(database, now=clock)
    ids = []
    for i in range(5):
        clock.advance(10)
        ids.append((await sessions.create(user_id="ada" if i % 2 == 0 else "bob", title=f"s{i}")).id)
    assert [s.id for s in await sessions.list()] == ids[::-1]
    assert [s.id for s in await sessions.list("ada")] == [ids[4], ids[2], ids[0]]
    assert [s.id for s in await sessions.list("bob", limit=1)] == [ids[3]]
    assert await sessions.list("carol") == []
    # New activity moves a session to the top.
    clock.advance(10)
    await history.append(ids[0], Message.user("back again"))
    assert [s.id for s in await sessions.list("ada")] == [ids[0], ids[4], ids[2]]
    assert len(await sessions.list(limit=None)) == 5


async def test_expiry_hides_refuses_and_purges(database: Database) -> None:
    clock = Clock()
    sessions = SessionManager(database, now=clock)
    history = ConversationHistory(database, now=clock)
    short = await sessions.create(user_id="ada", title="short", ttl=60)
    long = await sessions.create(user_id="ada", title="long", ttl=timedelta(hours=1))
    forever = await sessions.create(user_id="ada", title="forever")
    await history.append(short.id, Message.user("soon gone"))
    assert short.expires_at == clock.now + timedelta(seconds=60)

    clock.advance(61)
    assert {s.title for s in await sessions.list("ada")} == {"long", "forever"}
    assert {s.title for s in await sessions.list("ada", include_expired=True)} == {"short", "long", "forever"}
    with pytest.raises(SessionExpired, match=rf"session '{short.id}' expired at 2025-01-01T09:01:00\+00:00"):
        await sessions.resume(short.id)
    got = await sessions.get(short.id)
    assert got is not None and got.is_expired(clock.now)

    # touch with a ttl extends; expire ends a session now.
    await sessions.touch(long.id, ttl=7200)
    await sessions.expire(forever.id)
    with pytest.raises(SessionExpired):
        await sessions.resume(forever.id)

    assert await sessions.purge_expired() == 2
    assert await sessions.get(short.id) is None and await sessions.get(forever.id) is None
    assert await history.count(short.id) == 0
    assert await history.search("soon gone") == []
    assert await sessions.purge_expired(now=clock.now + timedelta(hours=1)) == 0
    assert await sessions.purge_expired(now=clock.now + timedelta(hours=3)) == 1
    with pytest.raises(HistoryError, match="ttl must be positive"):
        await sessions.create(ttl=0)


async def test_delete_removes_messages_and_their_search_entries(database: Database) -> None:
    sessions = SessionManager(database)
    history = ConversationHistory(database)
    gone = await sessions.create(title="gone")
    kept = await sessions.create(title="kept")
    await history.append(gone.id, Message.user("unicorn sightings"))
    await history.append(kept.id, Message.user("unicorn facts"))
    assert await sessions.delete(gone.id) is True
    assert await sessions.delete(gone.id) is False
    assert await history.count(gone.id) == 0
    assert [h.message.session_id for h in await history.search("unicorn")] == [kept.id]
    assert [s.id for s in await sessions.list()] == [kept.id]


async def test_preferences_set_update_and_are_per_user(database: Database) -> None:
    sessions = SessionManager(database)
    assert await sessions.get_preferences("ada") == {}
    assert await sessions.set_preferences("ada", theme="dark", language="de") == {"theme": "dark", "language": "de"}
    assert await sessions.update_preferences("ada", language="fr", model={"name": "small"}) == {
        "theme": "dark",
        "language": "fr",
        "model": {"name": "small"},
    }
    await sessions.set_preferences("bob", user_id="a key named user_id")
    assert await sessions.get_preferences("bob") == {"user_id": "a key named user_id"}
    assert await sessions.set_preferences("ada", only="this") == {"only": "this"}
    assert await sessions.get_preferences("ada") == {"only": "this"}
    with pytest.raises(HistoryError, match="preferences must be JSON-serializable"):
        await sessions.update_preferences("ada", bad=object())
    with pytest.raises(HistoryError, match="preferences need a user_id"):
        await sessions.set_preferences("", a=1)
    assert await sessions.get_preferences("ada") == {"only": "this"}


async def test_concurrent_preference_updates_lose_nothing(database: Database) -> None:
    others = [Database(database.url, schema=database.schema) for _ in range(2)]
    managers = [SessionManager(db) for db in (database, *others)]
    try:
        await asyncio.gather(*(managers[i % 3].update_preferences("ada", **{f"k{i}": i}) for i in range(30)))
    finally:
        for db in others:
            await db.aclose()
    assert await managers[0].get_preferences("ada") == {f"k{i}": i for i in range(30)}
