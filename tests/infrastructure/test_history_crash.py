"""kill -9 in the middle of a burst of appends: every acknowledged message survives, in order, and
the database is intact (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.data.history import ConversationHistory
from nanobrain.llm.messages import Message

# Appends forever; prints "seq content" for each message only after `append` returned (committed).
WRITER = """
import asyncio, sys
from nanobrain.infrastructure.data.database import Database
from nanobrain.infrastructure.data.history import ConversationHistory
from nanobrain.llm.messages import Message

async def main(url, schema):
    history = ConversationHistory(Database(url, schema=schema or None))
    i = 0
    while True:
        i += 1
        if i % 7 == 0:
            block = [Message.user(f"burst {i} part {k}") for k in range(3)]
            stored = await history.append_many("crash", block)
        else:
            stored = [await history.append("crash", Message.assistant(f"burst {i} " + "x" * (i % 50)))]
        for m in stored:
            sys.stdout.write(f"{m.seq}\\t{m.content}\\n")
        sys.stdout.flush()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

ACKNOWLEDGEMENTS = 300


async def _settled(history: ConversationHistory) -> list:
    """The stored messages once the killed writer's last transaction has settled.

    PostgreSQL may still commit what the dead client sent just before it died (the server only
    notices the closed socket afterwards), so two reads can differ by that one append.
    """
    deadline = asyncio.get_running_loop().time() + 10
    previous = await history.messages("crash")
    while True:
        await asyncio.sleep(0.1)
        current = await history.messages("crash")
        if len(current) == len(previous) == await history.count("crash"):
            return current
        assert asyncio.get_running_loop().time() < deadline, "the history kept changing after the writer died"
        previous = current


@pytest.mark.slow
async def test_acknowledged_appends_survive_sigkill(database: Database, tmp_path: Path) -> None:
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
    assert process.stdout is not None and process.stderr is not None
    acknowledged: dict[int, str] = {}
    try:
        while len(acknowledged) < ACKNOWLEDGEMENTS:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
            if not line:
                pytest.fail(f"the writer exited early: {(await process.stderr.read()).decode()}")
            seq, content = line.decode().rstrip("\n").split("\t", 1)
            acknowledged[int(seq)] = content
        # The writer is still appending: kill it mid-burst, without any chance to clean up.
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    # 255: asyncio's child watcher lost the status to another waiter (seen on a loaded machine); the
    # process was still killed by us, which is all the assertions below rely on.
    assert process.returncode in (-signal.SIGKILL, 255)
    # Acknowledgements already in the pipe count too; a torn last line (no newline) does not.
    for line in (await process.stdout.read()).decode().splitlines(keepends=True):
        if line.endswith("\n"):
            seq, content = line.rstrip("\n").split("\t", 1)
            acknowledged[int(seq)] = content

    reopened = Database(database.url, schema=database.schema)
    try:
        history = ConversationHistory(reopened)
        stored = await _settled(history)
        seqs = [m.seq for m in stored]
        # Everything acknowledged is there with its content; numbering has no gap or duplicate.
        assert seqs == list(range(1, len(stored) + 1))
        by_seq = {m.seq: m.content for m in stored}
        missing = [seq for seq in acknowledged if by_seq.get(seq) != acknowledged[seq]]
        assert missing == [], f"acknowledged but lost or changed: {missing[:10]}"
        assert len(stored) >= len(acknowledged) >= ACKNOWLEDGEMENTS
        assert await history.count("crash") == len(stored)

        async with reopened.connect() as connection:
            last_seq = (
                await connection.execute(text("SELECT last_seq FROM history_sessions WHERE id = 'crash'"))
            ).scalar_one()
            assert last_seq == len(stored)  # the counter and the rows were committed together
            if reopened.dialect == "sqlite":
                checks = (await connection.execute(text("PRAGMA integrity_check"))).scalars().all()
                assert checks == ["ok"]
                # The full-text index agrees with the messages table.
                await connection.execute(
                    text("INSERT INTO history_messages_fts(history_messages_fts) VALUES ('integrity-check')")
                )
        # The history keeps working where the dead writer stopped, and search sees the survivors.
        assert (await history.append("crash", Message.user("after the crash"))).seq == len(stored) + 1
        last_acknowledged = max(acknowledged)
        word = acknowledged[last_acknowledged].split()[1]
        assert any(h.message.seq == last_acknowledged for h in await history.search(f"burst {word}", limit=50))
    finally:
        await reopened.aclose()
