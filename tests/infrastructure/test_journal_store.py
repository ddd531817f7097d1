"""The SQL journal store on SQLite and PostgreSQL: runs, entries, leases, listing, pruning, versions."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from nanobrain.core.durable import this_process
from nanobrain.core.journal import JournalError, RunCorrupt, RunLocked, RunRecord
from nanobrain.infrastructure.data.database import Database, DatabaseError
from nanobrain.infrastructure.data.journal import SqlJournalStore


@pytest.fixture
async def store(database: Database):
    journal = SqlJournalStore(database)
    yield journal
    if journal._sqlite is not None:
        journal._sqlite.close()


def record(run_id: str, owner: str = "", status: str = "running", updated: float | None = None) -> RunRecord:
    now = time.time()
    return RunRecord(run_id, "wf", status=status, definition={"steps": {"a": {}}}, source="/x.yaml",
                     created=now, updated=updated or now, owner=owner)


def dead_owner() -> str:
    """The owner id of a process of this host that has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    return f"{socket.gethostname()}:{done.stdout.strip()}:dead"


async def test_runs_are_created_once_and_read_back(store: SqlJournalStore):
    await store.create(record("r1"))
    with pytest.raises(JournalError, match="already exists"):
        await store.create(record("r1"))
    got = await store.get("r1")
    assert got is not None
    assert (got.workflow, got.status, got.definition, got.source) == ("wf", "running", {"steps": {"a": {}}}, "/x.yaml")
    assert await store.get("missing") is None


async def test_entries_come_back_in_order_with_computed_counts(store: SqlJournalStore):
    await store.create(record("r2"))
    await store.append("r2", 0, [b"a", b"bb"])
    await store.append("r2", 2, [b"ccc"])
    assert await store.entries("r2") == [b"a", b"bb", b"ccc"]
    got = await store.get("r2")
    assert got is not None and (got.entries, got.bytes) == (3, 6)
    with pytest.raises(JournalError, match="entry 2 was already written"):
        await store.append("r2", 2, [b"again"])  # a sequence number is written once


async def test_a_missing_entry_is_reported_as_corrupt(store: SqlJournalStore):
    await store.create(record("gap"))
    await store.append("gap", 0, [b"a"])
    await store.append("gap", 2, [b"c"])
    with pytest.raises(RunCorrupt, match="entry 1 is missing"):
        await store.entries("gap")


async def test_leases_refuse_a_live_owner_and_take_over_a_dead_one(store: SqlJournalStore):
    await store.create(record("l1", owner="elsewhere:1:abc"))
    with pytest.raises(RunLocked, match="another process"):
        await store.acquire("l1", this_process())
    await store.create(record("l2", owner=dead_owner()))
    taken = await store.acquire("l2", this_process())
    assert taken.owner == this_process()
    await store.release("l2", this_process())
    assert (await store.get("l2")).owner == ""  # type: ignore[union-attr]
    with pytest.raises(JournalError, match="no durable run"):
        await store.acquire("nope", this_process())


async def test_two_processes_taking_a_dead_lease_at_once_one_wins(database: Database):
    first, second = SqlJournalStore(database), SqlJournalStore(Database(database.url, schema=database.schema))
    try:
        await first.create(record("race", owner=dead_owner()))
        results = await asyncio.gather(
            first.acquire("race", "host:1:first"), second.acquire("race", "host:2:second"), return_exceptions=True
        )
        winners = [r for r in results if isinstance(r, RunRecord)]
        losers = [r for r in results if isinstance(r, RunLocked)]
        assert len(winners) == 1 and len(losers) == 1, results
    finally:
        await second.aclose()
        if first._sqlite is not None:
            first._sqlite.close()


async def test_listing_filters_by_status_newest_first_and_updates_change_state(store: SqlJournalStore):
    for run_id in ("a", "b", "c"):
        await store.create(record(run_id))
        await asyncio.sleep(0.01)
    await store.update("b", status="waiting", where="input approval")
    assert [r.run_id for r in await store.runs()] == ["c", "b", "a"]
    waiting = await store.runs(status="waiting")
    assert [(r.run_id, r.where) for r in waiting] == [("b", "input approval")]
    with pytest.raises(JournalError, match="cannot update owner"):
        await store.update("a", owner="me")


async def test_prune_deletes_old_finished_and_failed_runs_with_their_entries(store: SqlJournalStore):
    old = time.time() - 100 * 86400
    await store.create(record("old-done", status="finished", updated=old))
    await store.create(record("old-failed", status="failed", updated=old))
    await store.create(record("old-waiting", status="waiting", updated=old))
    await store.create(record("new-done", status="finished"))
    await store.append("old-done", 0, [b"x"])
    assert await store.prune(finished_before=time.time() - 30 * 86400) == 2
    assert {r.run_id for r in await store.runs()} == {"old-waiting", "new-done"}
    assert await store.entries("old-done") == []


async def test_a_journal_of_a_newer_schema_version_is_refused(database: Database):
    from sqlalchemy import text

    store = SqlJournalStore(database)
    await store.create(record("v"))
    async with database.begin() as connection:
        await connection.execute(text("UPDATE nanobrain_schema SET version = 99 WHERE component = 'journal'"))
    newer = SqlJournalStore(Database(database.url, schema=database.schema))
    try:
        with pytest.raises(DatabaseError, match=r"journal tables .* schema version 99.*Upgrade NanoBrain"):
            await newer.get("v")
    finally:
        await newer.aclose()
        if store._sqlite is not None:
            store._sqlite.close()


async def test_the_default_store_prunes_by_its_retention_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOBRAIN_HOME", str(tmp_path))
    monkeypatch.delenv("NANOBRAIN_DATABASE_URL", raising=False)
    monkeypatch.setenv("NANOBRAIN_JOURNAL_RETENTION_DAYS", "7")
    first = SqlJournalStore.default()
    assert first.retention_days == 7
    await first.create(record("ancient", status="finished", updated=time.time() - 8 * 86400))
    await first.create(record("recent", status="finished", updated=time.time() - 6 * 86400))
    await first.aclose()
    later = SqlJournalStore.default()  # a new process: prunes once when first used
    try:
        assert {r.run_id for r in await later.runs()} == {"recent"}
    finally:
        await later.aclose()
    monkeypatch.setenv("NANOBRAIN_JOURNAL_RETENTION_DAYS", "soon")
    with pytest.raises(JournalError, match="NANOBRAIN_JOURNAL_RETENTION_DAYS='soon' must be a number of days"):
        SqlJournalStore.default()


async def test_a_damaged_journal_file_is_a_clear_error_that_names_it(tmp_path):
    path = tmp_path / "journal.db"
    store = SqlJournalStore(Database(f"sqlite:///{path}"))
    await store.create(record("r1"))
    await store.append("r1", 0, [b"x" * 3000 for _ in range(40)])
    root, page_size = store._fast().execute(  # type: ignore[union-attr]
        "SELECT (SELECT rootpage FROM sqlite_master WHERE name = 'nanobrain_journal'), "
        "(SELECT page_size FROM pragma_page_size)"
    ).fetchone()
    await store.aclose()
    with path.open("r+b") as file:  # a disk error garbles the entries table's first page
        file.seek((root - 1) * page_size)
        file.write(b"\xa5" * page_size)

    reopened = SqlJournalStore(Database(f"sqlite:///{path}"))
    try:
        for attempt in (lambda: reopened.entries("r1"), lambda: reopened.append("r1", 40, [b"more"])):
            with pytest.raises(DatabaseError) as info:
                await attempt()
            assert f"the SQLite database {path} is damaged" in str(info.value)
            assert f"sqlite3 {path} .recover" in str(info.value)
    finally:
        await reopened.aclose()


async def test_an_append_waits_for_an_async_writer_of_the_same_sqlite_file_without_blocking_the_loop(tmp_path):
    """History, sessions or an A2A task store may write the same SQLite file through an async connection that
    needs the event loop to commit: the journal must wait for it without blocking the loop (which deadlocked
    both until a timeout: "database is locked")."""
    from sqlalchemy import text

    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}")
    journal = SqlJournalStore(database)
    try:
        await journal.create(record("shared"))
        async with database.begin() as other:
            await other.execute(text("CREATE TABLE IF NOT EXISTS other_writer (x INTEGER)"))
            await other.execute(text("INSERT INTO other_writer VALUES (1)"))  # holds the write lock
            append = asyncio.ensure_future(journal.append("shared", 0, [b"entry"]))
            await asyncio.sleep(0.2)  # the loop keeps turning while the append waits
            assert not append.done()
        # `other` committed on leaving the block: the append goes through.
        await asyncio.wait_for(append, 10)
        assert await journal.entries("shared") == [b"entry"]
    finally:
        await journal.aclose()
        await database.aclose()
