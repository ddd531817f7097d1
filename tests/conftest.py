"""Helpers shared by the whole test suite.

Import them with `from tests.conftest import require` (the project root is on sys.path).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

REQUIRE_SERVICES = "NANOBRAIN_REQUIRE_SERVICES"


def services_required() -> bool:
    """True in CI (`.ci/run` sets NANOBRAIN_REQUIRE_SERVICES=1): missing services are failures."""
    return os.environ.get(REQUIRE_SERVICES, "").strip() == "1"


def require(condition: bool, reason: str) -> None:
    """Skip the current test (or fixture) unless `condition` holds.

    With NANOBRAIN_REQUIRE_SERVICES=1 the test fails instead, so that CI always exercises the
    real services (PostgreSQL, Redis, the local model) and never passes by skipping them.
    """
    if condition:
        return
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_SERVICES}=1: required services must be available)", pytrace=False)
    pytest.skip(reason)


REDIS_URL = os.environ.get("NANOBRAIN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis as a URL with a key prefix of this test's own (`?prefix=`); its keys are deleted afterwards."""
    import socket
    import uuid
    from urllib.parse import urlsplit

    where = urlsplit(REDIS_URL)
    try:
        socket.create_connection((where.hostname or "127.0.0.1", where.port or 6379), timeout=1).close()
    except OSError:
        require(False, f"Redis is not reachable at {where.hostname}:{where.port or 6379}")
    redis = pytest.importorskip("redis", reason="Redis needs the `storage` extra")
    prefix = f"nbtest_{uuid.uuid4().hex[:12]}:"
    yield f"{REDIS_URL}?prefix={prefix}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def second_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of this test's own on a free port of 127.0.0.1 (`redis-server`, no persistence): its URL."""
    import shutil
    import socket
    import subprocess
    import time

    binary = shutil.which("redis-server")
    require(binary is not None, "redis-server is not installed (apt-get install redis-server)")
    assert binary is not None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert process.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not answer within 10 s"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
