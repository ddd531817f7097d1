"""`nanobrain serve --registry`: a served replica and its A2A agents in the service registry (real
PostgreSQL and Redis), called by name, listed by `nanobrain services list`, gone on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tests.infrastructure.services.backends import Backend, open_backend
from typer.testing import CliRunner

from nanobrain.config import load_workflow
from nanobrain.interfaces.cli import app

pytest.importorskip("a2a", reason="needs the a2a extra")

FLOW = """
name: shout
description: Capitalize every word
inputs: {text: str}
outputs: {loud: str}
steps:
  title: {function: "string:capwords"}
links:
  - {from: inputs.text, to: title.s}
  - {from: title.result, to: outputs.loud}
"""


@pytest.fixture(params=["postgresql", "redis"])
async def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The service registries that replicas on several machines share."""
    async for opened in open_backend(request.param, tmp_path):
        yield opened


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_a_served_replica_registers_is_called_by_name_and_deregisters_on_sigterm(
    shared_backend: Backend, tmp_path: Path
) -> None:
    registry = shared_backend.registry
    flow = tmp_path / "shout.yaml"
    flow.write_text(textwrap.dedent(FLOW))
    port = free_port()
    env = {**os.environ, "NANOBRAIN_HOME": str(tmp_path / "home"), "NANOBRAIN_REGISTRY_URL": shared_backend.url}
    # A TTL far longer than the test: whatever disappears was deregistered, not expired.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nanobrain", "serve", str(flow), "--no-chat", "--port", str(port),
        "--registry-ttl", "60", stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(found := await registry.discover()) < 2:
            if process.returncode is not None or time.monotonic() > deadline:
                assert process.stderr is not None
                pytest.fail(f"the server did not register within 60 s: {(await process.stderr.read()).decode()}")
            await asyncio.sleep(0.1)
        base = f"http://127.0.0.1:{port}"
        by_type = {record.type: record for record in found}
        assert set(by_type) == {"replica", "a2a-agent"}
        replica, agent = by_type["replica"], by_type["a2a-agent"]
        assert replica.url == base and replica.metadata["workflows"] == ["shout"]
        assert replica.metadata["pid"] == process.pid
        assert (agent.name, agent.url) == ("shout", f"{base}/a2a/shout")
        assert agent.metadata["replica"] == replica.id and "shout" in agent.metadata["skills"]
        async with httpx.AsyncClient() as http:
            card = (await http.get(agent.metadata["card"])).json()
        assert card["name"] == "shout" and card["description"] == "Capitalize every word"

        # Another workflow calls the served agent by its registered name.
        caller = tmp_path / "caller.yaml"
        caller.write_text(
            "name: caller\ninputs: {message: str}\noutputs: {reply: str}\nsteps:\n"
            f"  remote: {{kind: a2a_agent, service: shout, registry: '{shared_backend.url}'}}\n"
            "links:\n  - {from: inputs.message, to: remote.message}\n  - {from: remote.reply, to: outputs.reply}\n"
        )
        async with load_workflow(caller) as workflow:
            assert await workflow.run(message="hello from afar") == {"reply": "Hello From Afar"}

        listed = await asyncio.to_thread(
            CliRunner().invoke, app, ["services", "list", "--registry", shared_backend.url]
        )
        assert listed.exit_code == 0, listed.output
        assert "replica" in listed.stdout and "a2a-agent" in listed.stdout and f"{base}/a2a/shout" in listed.stdout
        as_json = await asyncio.to_thread(
            CliRunner().invoke, app, ["services", "list", "--type", "a2a-agent", "--json"], env=env
        )
        assert [row["name"] for row in json.loads(as_json.stdout)] == ["shout"]

        process.send_signal(signal.SIGTERM)
        _, raw = await asyncio.wait_for(process.communicate(), 30)
        err = raw.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err
    assert "registered as 2 service(s)" in err
    assert await registry.discover() == []  # deregistered on the way out (the TTL was 60 s)


def test_services_list_without_a_registry_says_how_to_configure_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NANOBRAIN_REGISTRY_URL", raising=False)
    done = CliRunner().invoke(app, ["services", "list"])
    assert done.exit_code != 0 and "no service registry: set NANOBRAIN_REGISTRY_URL" in done.output
    assert "Traceback" not in done.output


def test_services_list_masks_the_password_of_an_unreachable_registry() -> None:
    url = f"redis://:s3cretpassword@127.0.0.1:{free_port()}/0"
    done = CliRunner().invoke(app, ["services", "list", "--registry", url])
    assert done.exit_code == 1 and "Redis redis://:***@127.0.0.1" in done.output
    assert "s3cretpassword" not in done.output and "Traceback" not in done.output


@pytest.mark.slow
def test_serve_with_an_unreachable_registry_stops_with_a_clear_error(tmp_path: Path) -> None:
    flow = tmp_path / "shout.yaml"
    flow.write_text(textwrap.dedent(FLOW))
    url = f"redis://:s3cretpassword@127.0.0.1:{free_port()}/0"
    done = subprocess.run(
        [sys.executable, "-m", "nanobrain", "serve", str(flow), "--no-chat", "--port", str(free_port()),
         "--registry", url],
        capture_output=True, text=True, timeout=120, env={**os.environ, "NANOBRAIN_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "service registry at Redis redis://:***@127.0.0.1" in done.stderr
    assert "s3cretpassword" not in done.stderr and "Traceback" not in done.stderr


def test_the_advertised_url_is_one_other_machines_can_use() -> None:
    from nanobrain.interfaces.http.announce import advertised_url

    assert advertised_url("127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert advertised_url("::1", 8080) == "http://[::1]:8080"
    assert advertised_url("0.0.0.0", 8080) == f"http://{socket.gethostname()}:8080"  # not "0.0.0.0"
    assert advertised_url("::", 9000) == f"http://{socket.gethostname()}:9000"
    assert advertised_url("0.0.0.0", 8080, "https://nb.example.org/") == "https://nb.example.org"
