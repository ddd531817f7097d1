"""`nanobrain agents list`: local agent steps and remote A2A agents with their cards and health."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("a2a")

from tests.protocols.conftest import child_env, free_port, serving

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_agents_list_shows_local_agents_and_remote_cards_with_health() -> None:
    port = free_port()
    code = (
        "import uvicorn; from tests.protocols import a2a_peer; from nanobrain.protocols.a2a import a2a_app; "
        f"uvicorn.run(a2a_app(a2a_peer.shout(), base_url='http://127.0.0.1:{port}', tags=['loud']), "
        f"host='127.0.0.1', port={port}, log_level='warning')"
    )
    down = f"http://127.0.0.1:{free_port()}"
    with serving(code, port):
        done = subprocess.run(
            [sys.executable, "-m", "nanobrain", "agents", "list", str(EXAMPLES / "assistant.yaml"),
             "--remote", f"http://127.0.0.1:{port}", "--remote", down, "--json", "--timeout", "3"],
            capture_output=True, text=True, timeout=60, env=child_env(),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["assistant/assistant"]["skills"] == ["convert_temperature", "word_count"]
    shout = rows[f"http://127.0.0.1:{port}"]
    assert shout["healthy"] and shout["skills"] == ["loud", "shout"]
    assert shout["description"] == "Shout a text back, word by word"
    assert not rows[down]["healthy"] and rows[down]["problem"]
