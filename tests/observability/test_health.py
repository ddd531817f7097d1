"""The health monitor against real components: SQLite, PostgreSQL, Redis, a pool, an HTTP peer."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import require

from nanobrain.infrastructure.parallel import ProcessorPool
from nanobrain.observability.health import (
    HealthMonitor,
    database_check,
    http_check,
    model_check,
    pool_check,
    redis_check,
)
from nanobrain.testing import SimulatedProcessor


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def peer() -> Iterator[str]:
    """An HTTP server on 127.0.0.1: `/ok` answers 200, anything else 404."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ok" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


async def test_healthy_components_make_a_healthy_report(tmp_path: Path, peer: str) -> None:
    require(reachable(5432), "PostgreSQL is not reachable on 127.0.0.1:5432")
    require(reachable(6379), "Redis is not reachable on 127.0.0.1:6379")
    pool = ProcessorPool([SimulatedProcessor("p0"), SimulatedProcessor("p1")], name="workers")
    pool.set_healthy("p0", False)
    loaded = asyncio.Event()
    loaded.set()
    monitor = (
        HealthMonitor()
        .add("sqlite", database_check(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"))
        .add("postgresql", database_check("postgresql+asyncpg://postgres@127.0.0.1:5432/test"))
        .add("redis", redis_check("redis://127.0.0.1:6379/0"))
        .add("pool workers", pool_check(pool))
        .add("model", model_check(loaded.is_set, "smollm2"))
        .add("remote agent", http_check(f"{peer}/ok"))
    )
    report = await monitor.check()
    assert report.ok, report.to_dict()
    assert report.checks["pool workers"].detail == "1 of 2 processors serving, 0 queued"
    assert report.checks["postgresql"].detail.startswith("postgresql ")
    assert report.to_dict()["status"] == "ok"
    await pool.aclose()


async def test_failing_components_are_named_with_the_reason_and_no_secret(peer: str) -> None:
    pool = ProcessorPool([SimulatedProcessor("p0")], name="workers")
    pool.set_healthy("p0", False)

    async def hangs() -> str:
        await asyncio.sleep(60)
        return "never"

    monitor = (
        HealthMonitor(timeout=0.5)
        .add("redis", redis_check(f"redis://:sup3rsecret@127.0.0.1:{free_port()}/0"))
        .add("pool workers", pool_check(pool))
        .add("model", model_check(lambda: False, "smollm2"))
        .add("remote agent", http_check(f"{peer}/missing"))
        .add("slow", hangs)
    )
    report = await monitor.check()
    assert not report.ok
    assert report.failing == ["redis", "pool workers", "model", "remote agent", "slow"]
    details = {name: result.detail for name, result in report.checks.items()}
    assert "sup3rsecret" not in str(report.to_dict())
    assert details["pool workers"] == "0 of 1 processors serving, 0 queued"
    assert details["model"] == "smollm2 is not loaded"
    assert details["remote agent"].endswith("/missing answered 404")
    assert details["slow"] == "no answer within 0.5s"
    assert report.to_dict()["status"] == "unhealthy"
    await pool.aclose()


def test_bad_monitor_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="timeout must be positive"):
        HealthMonitor(timeout=0)

    async def ok() -> str:
        return "ok"

    monitor = HealthMonitor().add("a", ok)
    with pytest.raises(ValueError, match="already a health check named 'a'"):
        monitor.add("a", ok)


def test_nanobrain_health_command(tmp_path: Path, peer: str) -> None:
    import json

    from typer.testing import CliRunner

    from nanobrain.interfaces.cli import app

    runner = CliRunner()
    database = f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"
    good = runner.invoke(app, ["health", "--database", database, "--remote", f"{peer}/ok", "--json"])
    assert good.exit_code == 0, good.output
    report = json.loads(good.stdout)
    assert report["status"] == "ok" and set(report["checks"]) == {"database", "remote"}
    bad = runner.invoke(
        app, ["health", "--database", database, "--redis", f"redis://:pw-s3cret@127.0.0.1:{free_port()}/0"]
    )
    assert bad.exit_code == 1
    assert "FAIL" in bad.stdout and "unhealthy: redis" in bad.stderr
    assert "pw-s3cret" not in bad.stdout + bad.stderr and "Traceback" not in bad.stdout + bad.stderr
    nothing = runner.invoke(app, ["health", "--no-database"])
    assert nothing.exit_code == 1 and "nothing to check" in nothing.stderr


async def test_the_servers_monitor_checks_each_pool_of_its_workflows() -> None:
    from tests.observability.workloads import nested_agent_workflow, parallel_workflow

    from nanobrain.observability.http import server_health

    workflow = parallel_workflow()
    monitor = server_health([workflow, nested_agent_workflow()])
    assert monitor.names == ["pool fan"]
    assert (await monitor.check()).ok
    pool = workflow.steps["fan"].pool  # type: ignore[attr-defined]
    for processor in pool.processors:
        pool.set_healthy(processor, False)
    report = await monitor.check()
    assert report.failing == ["pool fan"] and report.checks["pool fan"].detail.startswith("0 of 2")
