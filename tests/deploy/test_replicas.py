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


NAPPING_STEPS = '''
import asyncio


async def nap(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "rested"
'''

NAPPING_FLOW = """
name: napping
inputs: {seconds: float}
outputs: {said: str}
steps:
  nap: {function: "napping_steps:nap"}
links:
  - {from: inputs.seconds, to: nap.seconds}
  - {from: nap.result, to: outputs.said}
"""


def read_events(url: str, events: list[dict[str, Any]], **headers: str) -> None:
    """Append each SSE event of `url` to `events` as it arrives (run in a thread)."""
    import json

    with httpx.stream("GET", url, headers=headers, timeout=60) as response:
        assert response.status_code == 200, response.read()
        current: dict[str, Any] = {}
        for line in response.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if current:
                    events.append(current)
                current = {}
                continue
            name, _, value = line.partition(": ")
            current[name] = json.loads(value) if name == "data" else value


def test_a_run_started_on_one_replica_is_watched_and_cancelled_from_the_other(
    tmp_path: Path, database: str, redis_url: str, second_redis: str
) -> None:
    import threading

    (tmp_path / "napping_steps.py").write_text(NAPPING_STEPS)
    flow = tmp_path / "napping.yaml"
    flow.write_text(textwrap.dedent(NAPPING_FLOW))
    # Two Redis servers: the runs' events are spread over them (the replicas list them in the same order).
    env = {"NANOBRAIN_DATABASE_URL": database, "NANOBRAIN_REDIS_URL": f"{redis_url},{second_redis}"}
    with (
        replica(tmp_path / "a", str(flow), "--no-chat", env=env) as a,
        replica(tmp_path / "b", str(flow), "--no-chat", env=env) as b,
    ):
        started = a.post("/v1/workflows/napping/runs", {"inputs": {"seconds": 120}, "mode": "background"})
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]

        events: list[dict[str, Any]] = []
        reader = threading.Thread(target=read_events, args=(f"{b.url}/v1/runs/{run_id}/events", events), daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        while "step_started" not in [e["event"] for e in list(events)]:
            assert time.monotonic() < deadline, f"replica b streamed no step_started: {events}"
            time.sleep(0.05)
        assert b.get(f"/v1/runs/{run_id}").json()["status"] == "running"
        assert run_id in [run["run_id"] for run in b.get("/v1/runs").json()["runs"]]

        cancelled = b.post(f"/v1/runs/{run_id}/cancel", {})
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        on_a = a.get(f"/v1/runs/{run_id}").json()
        assert on_a["status"] == "cancelled" and on_a["finished"] is not None
        reader.join(30)
        assert not reader.is_alive(), f"replica b's stream did not end: {events}"
        assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "cancelled"


def test_the_rate_limit_is_one_budget_across_replicas(tmp_path: Path, database: str, redis_url: str) -> None:
    flow = tmp_path / "tagged.yaml"
    flow.write_text(textwrap.dedent(FLOW))
    (tmp_path / "replica_steps.py").write_text(STEPS)
    env = {"NANOBRAIN_DATABASE_URL": database, "NANOBRAIN_REDIS_URL": redis_url}
    limit = ("--rate-limit", "0.02")  # one request now, the next in 50 s
    with (
        replica(tmp_path / "a", str(flow), "--no-chat", *limit, env=env) as a,
        replica(tmp_path / "b", str(flow), "--no-chat", *limit, env=env) as b,
    ):
        assert a.get("/v1/workflows").status_code == 200
        refused = b.get("/v1/workflows")  # the same caller (open mode: the local admin), the other replica
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) > 1
        assert a.get("/v1/workflows").status_code == 429
