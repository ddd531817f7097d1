"""`nanobrain serve` and `nanobrain keys` as a user runs them, and a clean stop on signals."""

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
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from nanobrain.interfaces.cli import app

pytest.importorskip("fastapi", reason="the HTTP server needs the `server` extra")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NANOBRAIN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NANOBRAIN_DATABASE_URL", raising=False)
    return tmp_path / "home"


def test_keys_create_list_revoke(home: Path) -> None:
    cli = CliRunner()
    created = cli.invoke(app, ["keys", "create", "deploy-bot", "--role", "admin"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[0]
    assert secret.startswith("nb_")
    key_id = secret.split("_")[1]
    listed = cli.invoke(app, ["keys", "list"])
    assert key_id in listed.stdout and "admin" in listed.stdout and "active" in listed.stdout
    assert secret not in listed.stdout
    assert cli.invoke(app, ["keys", "revoke", key_id]).exit_code == 0
    assert "revoked" in cli.invoke(app, ["keys", "list"]).stdout
    missing = cli.invoke(app, ["keys", "revoke", "0123456789abcdef"])
    assert missing.exit_code == 1 and "no API key with id" in missing.output and "Traceback" not in missing.output
    bad_role = cli.invoke(app, ["keys", "create", "x", "--role", "root"])
    assert bad_role.exit_code == 2 and "root" in bad_role.output


def test_serve_refuses_a_public_address_without_keys_and_says_how(home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nanobrain", "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "NANOBRAIN_HOME": str(home)},
    )  # fmt: skip
    assert done.returncode == 1
    assert "refusing to listen on 0.0.0.0" in done.stderr and "nanobrain keys create" in done.stderr
    assert "--insecure" in done.stderr and "Traceback" not in done.stderr


def test_serve_says_which_redis_it_cannot_reach_without_its_password(home: Path, tmp_path: Path) -> None:
    (tmp_path / "quote_steps.py").write_text("def quote(text: str) -> str:\n    return repr(text)\n")
    flow = tmp_path / "quote.yaml"
    flow.write_text("name: quote\ninputs: {x: str}\noutputs: {y: str}\nsteps:\n  quote: {function: quote_steps:quote}\n"
                    "links:\n  - {from: inputs.x, to: quote.text}\n  - {from: quote.result, to: outputs.y}\n")
    closed = free_port()  # nothing listens there
    done = subprocess.run(
        [sys.executable, "-m", "nanobrain", "serve", str(flow), "--no-chat", "--port", str(free_port())],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "NANOBRAIN_HOME": str(home), "NANOBRAIN_REDIS_URL": f"redis://:hunter2@127.0.0.1:{closed}/0"},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{closed}/0" in done.stderr
    assert "NANOBRAIN_REDIS_URL" in done.stderr
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


LAUNCHER = """
import asyncio, sys
from nanobrain.interfaces.http import create_app
from nanobrain.interfaces.http.serve import make_server
from nanobrain.llm import ScriptedModel
from nanobrain.workflows.chat import ChatApp

async def main():
    model = ScriptedModel(respond=lambda request: "word " * 400, chunk_size=5, delay=0.02)
    chat = await ChatApp.open(model=model, database_url=sys.argv[2])
    app = create_app(chat=chat, close_on_shutdown=True)
    await make_server(app, "127.0.0.1", int(sys.argv[1]), log_level="warning").serve()

asyncio.run(main())
print("clean exit", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_stops_the_server_cleanly_and_keeps_the_partial_answer(tmp_path: Path, stop: int) -> None:
    script = tmp_path / "launch.py"
    script.write_text(textwrap.dedent(LAUNCHER))
    port, database = free_port(), f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    process = subprocess.Popen(
        [sys.executable, str(script), str(port), database], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()  # type: ignore[union-attr]
            time.sleep(0.1)
        body = {"model": "chat", "messages": [{"role": "user", "content": "talk"}], "stream": True}
        lines = []
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers={"X-Session-Id": "s"}) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                lines.append(line)
                if len(lines) == 10:
                    process.send_signal(stop)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "clean exit" in out
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert "shutting down" in data[-1]["error"]["message"]  # the stream says why it ended early
    streamed = "".join(d["choices"][0]["delta"].get("content", "") for d in data if d.get("choices"))
    assert 0 < len(streamed) < len("word " * 400)

    async def history() -> list:
        from nanobrain.infrastructure.data.database import Database
        from nanobrain.infrastructure.data.history import ConversationHistory

        db = Database(database)
        try:
            return await ConversationHistory(db).messages("s")
        finally:
            await db.aclose()

    stored = asyncio.run(history())
    assert [m.message.role for m in stored] == ["user", "assistant"]
    assert stored[1].metadata.get("interrupted") is True
    assert stored[1].message.content.startswith(streamed)  # at least what the client saw was kept


@pytest.mark.slow
def test_serve_a_workflow_file_with_a_key_made_by_the_cli(home: Path, tmp_path: Path) -> None:
    flow = tmp_path / "shout.yaml"
    flow.write_text(textwrap.dedent("""
        name: shout
        inputs: {text: str}
        outputs: {loud: str}
        steps:
          title: {function: "string:capwords"}
        links:
          - {from: inputs.text, to: title.s}
          - {from: title.result, to: outputs.loud}
    """))
    env = {**os.environ, "NANOBRAIN_HOME": str(home)}
    created = subprocess.run([sys.executable, "-m", "nanobrain", "keys", "create", "tester", "--role", "run"],
                             capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "nanobrain", "serve", str(flow), "--no-chat", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()  # type: ignore[union-attr]
            time.sleep(0.1)
        assert httpx.post(f"{url}/v1/workflows/shout/runs", json={"inputs": {"text": "hi"}}).status_code == 401
        ran = httpx.post(
            f"{url}/v1/workflows/shout/runs", json={"inputs": {"text": "hi there"}}, headers={"X-API-Key": key}
        )
        assert ran.status_code == 200, ran.text
        assert ran.json()["outputs"] == {"loud": "Hi There"}
        assert httpx.get(f"{url}/v1/models", headers={"X-API-Key": key}).json()["data"] == []
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "serving shout on http://127.0.0.1:" in err and "1 API key" in err
