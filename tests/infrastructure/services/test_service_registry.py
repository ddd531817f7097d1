"""The service registry's contract on every backend: memory, SQLite, PostgreSQL and Redis.

Real services (PostgreSQL and Redis from the fixtures); short TTLs with generous bounds, since the
machine may be busy: a check waits for an expiry up to several seconds past the TTL.
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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.infrastructure.conftest import unique_name
from tests.infrastructure.services.backends import Backend, open_backend

from nanobrain.errors import ServiceRegistryError
from nanobrain.infrastructure.services import MemoryServiceRegistry, ServiceRecord, open_registry

SRC = Path(__file__).resolve().parents[3] / "src"


@pytest.fixture(params=["memory", "sqlite", "postgresql", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async for opened in open_backend(request.param, tmp_path):
        yield opened


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
async def process_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The backends another process can open too."""
    async for opened in open_backend(request.param, tmp_path):
        yield opened


async def wait_until(predicate: Any, within: float) -> float:
    """Poll the async `predicate` until true; returns the seconds it took (fails after `timeout`)."""
    started = time.monotonic()
    while not await predicate():
        assert time.monotonic() - started < within, f"not true within {within}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_register_and_discover_by_type_and_name(backend: Backend) -> None:
    registry = backend.registry
    replica = ServiceRecord("replica", "host-a:8080", "http://10.0.0.5:8080", {"pid": 42, "workflows": ["chat"]})
    agent = ServiceRecord("a2a-agent", "summarizer", "http://10.0.0.5:8080/a2a/summarizer", {"skills": ["sum"]})
    other = ServiceRecord("a2a-agent", "translator", "http://10.0.0.6:8080/a2a/translator")
    before = time.time()
    registrations = [await registry.register(r, ttl=30) for r in (replica, agent, other)]
    try:
        found = await registry.discover("a2a-agent")
        assert [(r.name, r.url, r.id) for r in found] == [
            ("summarizer", agent.url, agent.id),
            ("translator", other.url, other.id),
        ]
        assert found[0].metadata == {"skills": ["sum"]}
        assert found[0].expires_at is not None and before + 25 < found[0].expires_at < time.time() + 35
        assert [r.id for r in await registry.discover("a2a-agent", "translator")] == [other.id]
        assert await registry.discover("a2a-agent", "nobody") == []
        assert [r.metadata for r in await registry.discover("replica")] == [{"pid": 42, "workflows": ["chat"]}]
        assert {r.id for r in await registry.discover()} == {replica.id, agent.id, other.id}
        assert await registry.discover("no-such-type") == []
    finally:
        for registration in registrations:
            await registration.stop()
    assert await registry.discover() == []


async def test_deregister_removes_a_service_at_once(backend: Backend) -> None:
    registry = backend.registry
    record = ServiceRecord("replica", "r1", "http://127.0.0.1:1")
    await registry.announce(record, 30)
    assert await registry.deregister(record.id) is True
    assert await registry.discover("replica") == []
    assert await registry.deregister(record.id) is False
    assert await registry.deregister("never-registered") is False


async def test_a_record_without_heartbeat_expires_after_its_ttl(backend: Backend) -> None:
    registry = backend.registry
    record = ServiceRecord("replica", "short-lived", "http://127.0.0.1:1")
    await registry.announce(record, 0.5)
    assert [r.id for r in await registry.discover("replica")] == [record.id]

    async def gone() -> bool:
        return await registry.discover("replica") == []

    took = await wait_until(gone, within=10)
    assert took >= 0.3  # it lived about its TTL (measured from after the first read)


async def test_the_heartbeat_keeps_a_service_alive_beyond_its_ttl(backend: Backend) -> None:
    registry = backend.registry
    record = ServiceRecord("a2a-agent", "steady", "http://127.0.0.1:2")
    registration = await registry.register(record, ttl=1.0)
    try:
        for _ in range(5):  # 2.5 TTLs in all
            await asyncio.sleep(0.5)
            assert [r.id for r in await registry.discover("a2a-agent", "steady")] == [record.id]
        assert registration.alive and registration.failures == 0
    finally:
        await registration.stop()
    assert await registry.discover("a2a-agent") == []  # stopped: deregistered, not waiting for the TTL
    assert not registration.alive


async def test_a_stopped_heartbeat_without_deregistering_lets_the_record_expire(backend: Backend) -> None:
    registry = backend.registry
    registration = await registry.register(ServiceRecord("replica", "r", "http://127.0.0.1:3"), ttl=0.6)
    await registration.stop(deregister=False)
    assert len(await registry.discover("replica")) == 1

    async def gone() -> bool:
        return await registry.discover("replica") == []

    await wait_until(gone, within=10)


KILLED_CHILD = """
import asyncio, sys
from nanobrain.infrastructure.services import ServiceRecord, open_registry

async def main():
    registry = open_registry(sys.argv[1])
    await registry.register(ServiceRecord("replica", "doomed", "http://127.0.0.1:9", id=sys.argv[2]), ttl=3.0)
    print("registered", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_killed_process_expires_after_its_ttl(process_backend: Backend, tmp_path: Path) -> None:
    backend = process_backend
    registry = backend.registry
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(KILLED_CHILD))
    service_id = unique_name("svc")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), backend.url, service_id, stdout=subprocess.PIPE, env=env
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line.strip() == b"registered"
        await asyncio.sleep(3.5)  # beyond the TTL: alive only through the child's heartbeat
        assert [r.id for r in await registry.discover("replica", "doomed")] == [service_id]
        process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == -signal.SIGKILL
    # Killed: no deregistration ran, so the record is still there...
    assert [r.id for r in await registry.discover("replica")] == [service_id]

    async def gone() -> bool:
        return await registry.discover("replica") == []

    # ...until its TTL (3 s) runs out.
    await wait_until(gone, within=3.0 + 10)


async def test_bad_input_gets_a_clear_error() -> None:
    registry = MemoryServiceRegistry()
    with pytest.raises(ServiceRegistryError, match="type must be a non-empty string"):
        ServiceRecord("", "x", "http://h")
    with pytest.raises(ServiceRegistryError, match="ttl must be a positive number"):
        await registry.register(ServiceRecord("replica", "x", "http://h"), ttl=0)
    with pytest.raises(ServiceRegistryError, match="heartbeat interval"):
        await registry.register(ServiceRecord("replica", "x", "http://h"), ttl=1, interval=2)
    with pytest.raises(ServiceRegistryError, match="metadata must be JSON"):
        await registry.announce(ServiceRecord("replica", "x", "http://h", {"when": object()}), 5)
    with pytest.raises(ServiceRegistryError, match="unsupported service registry URL 'ftp://u:\\*\\*\\*@h'"):
        open_registry("ftp://u:secret@h")


async def test_an_unreachable_redis_is_a_clear_error_without_the_password() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    registry = open_registry(f"redis://:hunter2secret@127.0.0.1:{port}/0")
    try:
        with pytest.raises(ServiceRegistryError) as caught:
            await registry.discover("replica")
    finally:
        await registry.aclose()
    assert "Redis redis://:***@127.0.0.1:" in str(caught.value) and "hunter2secret" not in str(caught.value)


def test_describe_masks_urls_and_secret_looking_metadata() -> None:
    record = ServiceRecord("replica", "r", "http://user:pw123456@h:1/x", {"api_key": "sk-abcdefghijkl", "n": 1})
    described = record.describe()
    assert described["url"] == "http://user:***@h:1/x"
    assert "sk-abcdefghijkl" not in str(described) and described["metadata"]["n"] == 1


class FlakyRegistry(MemoryServiceRegistry):
    """A memory registry that refuses writes while `down` (a registry that is briefly unreachable)."""

    down = False

    async def announce(self, record: ServiceRecord, ttl: float) -> None:
        if self.down:
            raise ServiceRegistryError("the service registry at memory:// failed: connection refused")
        await super().announce(record, ttl)


async def test_a_failed_heartbeat_is_logged_and_the_next_one_recovers(caplog: pytest.LogCaptureFixture) -> None:
    registry = FlakyRegistry()
    registration = await registry.register(ServiceRecord("replica", "r", "http://127.0.0.1:4"), ttl=3, interval=0.1)
    try:
        registry.down = True

        async def failing() -> bool:
            return registration.failures >= 2

        await wait_until(failing, within=10)
        assert registration.alive  # a failure does not end the heartbeat
        assert "heartbeat of replica 'r' to the service registry at memory:// failed (1 in a row)" in caplog.text
        registry.down = False

        async def recovered() -> bool:
            return registration.failures == 0

        await wait_until(recovered, within=10)
        assert [r.name for r in await registry.discover("replica")] == ["r"]
    finally:
        await registration.stop()
    assert await registry.discover() == []


async def test_a_virtual_clock_decides_expiry_without_waiting(tmp_path: Path) -> None:
    from nanobrain.infrastructure.data.database import Database
    from nanobrain.infrastructure.services import SqlServiceRegistry

    now = [1000.0]
    for registry in (
        MemoryServiceRegistry(clock=lambda: now[0]),
        SqlServiceRegistry(Database(f"sqlite:///{tmp_path / 'clock.db'}"), clock=lambda: now[0], owns_database=True),
    ):
        async with registry:
            now[0] = 1000.0
            await registry.announce(ServiceRecord("replica", "r", "http://127.0.0.1:5"), 10)
            now[0] = 1009.5
            (record,) = await registry.discover("replica")
            assert record.expires_at == 1010.0
            now[0] = 1010.5
            assert await registry.discover("replica") == [], registry
