"""Two real `nanobrain serve` processes on 127.0.0.1 sharing one PostgreSQL database.

A conversation started on one replica continues on the other (the history lives in the database),
and a durable run whose replica is killed (`kill -9`) is resumed by the other (the journal's lease
names a dead process, so the other may take it over).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import require
from tests.deploy.scripted_upstream import scripted_upstream

pytest.importorskip("fastapi", reason="the HTTP server needs the `server` extra")
asyncpg = pytest.importorskip("asyncpg", reason="PostgreSQL needs the `storage` extra")

pytestmark = pytest.mark.slow
POSTGRES = os.environ.get("NANOBRAIN_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
ADMIN_DSN = POSTGRES.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (the replicas create their tables), dropped afterwards."""
    name = f"nb_replicas_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(ADMIN_DSN, timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        require(False, f"PostgreSQL is not reachable at {ADMIN_DSN}: {exc}")
    try:
        yield POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Replica:
    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process, self.url = process, url

    def post(self, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=30)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=30)


@contextmanager
def replica(home: Path, *args: str, env: dict[str, str]) -> Iterator[Replica]:
    """`nanobrain serve` in a process of its own, ready (GET /ready is 200) when the block starts."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log = (home / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "nanobrain", "serve", *args, "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, "NANOBRAIN_HOME": str(home), **env},
    )  # fmt: skip
    server = Replica(process, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if server.get("/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (home / "serve.log").read_text()
            assert time.monotonic() < deadline, "replica not ready within 60 s:\n" + (home / "serve.log").read_text()
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def test_a_conversation_started_on_one_replica_continues_on_the_other(tmp_path: Path, database: str) -> None:
    with scripted_upstream() as upstream:
        env = {"NANOBRAIN_DATABASE_URL": database, "NANOBRAIN_MODEL": f"openai-compatible:scripted@{upstream.url}"}
        with replica(tmp_path / "a", env=env) as a, replica(tmp_path / "b", env=env) as b:
            chat = {"model": "chat", "messages": [{"role": "user", "content": "my name is Ada"}]}
            first = a.post("/v1/chat/completions", chat)
            assert first.status_code == 200, first.text
            session = first.headers["X-Session-Id"]
            assert first.json()["choices"][0]["message"]["content"] == "turn 1: you said 'my name is Ada'"

            again = {"model": "chat", "messages": [{"role": "user", "content": "what is my name?"}]}
            second = b.post("/v1/chat/completions", again, **{"X-Session-Id": session})
            assert second.status_code == 200, second.text
            assert second.headers["X-Session-Id"] == session
            # Replica b sent the whole conversation upstream: it read replica a's turn from PostgreSQL.
            assert second.json()["choices"][0]["message"]["content"] == "turn 2: you said 'what is my name?'"
            sent = [(m["role"], m["content"]) for m in upstream.requests[-1]["messages"] if m["role"] != "system"]
            assert sent == [
                ("user", "my name is Ada"),
                ("assistant", "turn 1: you said 'my name is Ada'"),
                ("user", "what is my name?"),
            ]
            # And either replica lists it.
            history = a.get(f"/v1/sessions/{session}")
            assert history.status_code == 200, history.text
            contents = [m.get("content") for m in history.json()["messages"]]
            assert contents[-1] == "turn 2: you said 'what is my name?'", contents


STEPS = '''
import os, time
from pathlib import Path


def _log(line):
    with open(os.environ["REPLICA_STEP_LOG"], "a") as log:
        log.write(f"{line} {os.getpid()}\\n")


def shout(text: str) -> str:
    _log("shout")
    return text.upper()


def slow_tag(text: str) -> str:
    _log("tag")
    time.sleep(float(os.environ.get("REPLICA_STEP_DELAY", "0")))
    return f"<{text}>"
'''

FLOW = """
name: tagged
inputs: {text: str}
outputs: {tagged: str}
steps:
  shout: {function: "replica_steps:shout"}
  tag: {function: "replica_steps:slow_tag"}
links:
  - {from: inputs.text, to: shout.text}
  - {from: shout.result, to: tag.text}
  - {from: tag.result, to: outputs.tagged}
"""


def test_a_durable_run_whose_replica_is_killed_is_resumed_by_the_other(tmp_path: Path, database: str) -> None:
    (tmp_path / "replica_steps.py").write_text(STEPS)
    flow = tmp_path / "tagged.yaml"
    flow.write_text(textwrap.dedent(FLOW))
    log = tmp_path / "steps.log"
    env = {"NANOBRAIN_DATABASE_URL": database, "REPLICA_STEP_LOG": str(log)}
    with replica(tmp_path / "a", str(flow), "--no-chat", env={**env, "REPLICA_STEP_DELAY": "120"}) as a:
        started = a.post("/v1/workflows/tagged/runs", {"inputs": {"text": "hi"}, "durable": True, "mode": "background"})
        assert started.status_code in (200, 202), started.text
        run_id = started.json()["run_id"]
        deadline = time.monotonic() + 30
        while "tag" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "the slow step never started"
            time.sleep(0.05)
        a.process.send_signal(signal.SIGKILL)  # no clean shutdown: the lease stays behind
        a.process.wait(timeout=10)
    with replica(tmp_path / "b", str(flow), "--no-chat", env=env) as b:
        found = b.get(f"/v1/runs/{run_id}")
        assert found.status_code == 200, found.text
        assert found.json()["status"] == "interrupted"
        resumed = b.post(f"/v1/runs/{run_id}/input", {"inputs": {}, "wait": True})
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["status"] == "succeeded", resumed.text
        assert resumed.json()["outputs"] == {"tagged": "<HI>"}
    calls = [line.split()[0] for line in log.read_text().splitlines()]
    # The finished step was not run again; the one the killed replica was in was run by the other.
    assert calls == ["shout", "tag", "tag"]
