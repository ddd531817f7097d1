"""Our MCP client against real MCP servers: `mcp-server-time` (PyPI) over stdio and over
Streamable HTTP, `mcp-server-git` over stdio, and a misbehaving server (hangs, crashes)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from nanobrain.agents.agent import Agent
from nanobrain.config import load_workflow
from nanobrain.llm import ScriptedModel, call
from nanobrain.protocols.errors import ProtocolError
from nanobrain.protocols.mcp import MCPToolset

from .conftest import child_env, free_port, serving

pytest.importorskip("mcp_server_time", reason="needs mcp-server-time (test extra)")

TIME_SERVER = [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]
PEER = [sys.executable, "-m", "tests.protocols.mcp_peer"]


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}


async def test_time_server_over_stdio_tools_keep_their_schemas_and_errors_are_tool_errors() -> None:
    async with MCPToolset(TIME_SERVER, timeout=20) as toolset:
        tools = {t.name: t for t in await toolset.tools()}
        assert set(tools) == {"get_current_time", "convert_time"}
        # The server's JSON Schema is used as given (no pydantic model in between).
        spec = tools["convert_time"].spec.parameters
        assert spec["required"] == ["source_timezone", "time", "target_timezone"]
        assert "IANA timezone" in spec["properties"]["source_timezone"]["description"]
        result = await tools["convert_time"].call(
            {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
        )
        assert not result.is_error and "T21:00" in result.content
        bad = await tools["get_current_time"].call({"timezone": "Nowhere/Atlantis"})
        assert bad.is_error and "Nowhere/Atlantis" in bad.content


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "notes.txt").write_text("hello\n")
    subprocess.run([*git, "add", "notes.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "first notes"], check=True)
    return repo


async def test_git_server_over_stdio_reads_a_real_repository(repo: Path) -> None:
    pytest.importorskip("mcp_server_git")
    toolset = MCPToolset([sys.executable, "-m", "mcp_server_git", "-r", str(repo)], tools=["git_log"], timeout=20)
    try:
        (log,) = await toolset.tools()
        result = await log.call({"repo_path": str(repo)})
        assert not result.is_error and "first notes" in result.content
    finally:
        await toolset.aclose()


async def test_time_server_over_streamable_http() -> None:
    port = free_port()
    code = (
        "import uvicorn; from mcp_server_time.server import create_server; "
        f"uvicorn.run(create_server('UTC').streamable_http_app(), host='127.0.0.1', port={port}, log_level='warning')"
    )
    with serving(code, port):
        async with MCPToolset(url=f"http://127.0.0.1:{port}/mcp", prefix="time_") as toolset:
            tools = {t.name: t for t in await toolset.tools()}
            assert set(tools) == {"time_get_current_time", "time_convert_time"}
            result = await tools["time_get_current_time"].call({"timezone": "Europe/Paris"})
            assert not result.is_error and "Europe/Paris" in result.content


async def test_yaml_agent_uses_mcp_tools_goes_on_after_a_tool_error_and_closes_the_server(tmp_path: Path) -> None:
    path = tmp_path / "timekeeper.yaml"
    path.write_text(
        "name: timekeeper\ninputs: {message: str}\noutputs: {reply: str}\nsteps:\n"
        "  agent:\n    kind: agent\n    mcp_servers:\n"
        f"      - command: {TIME_SERVER!r}\n        tools: [get_current_time]\n        timeout: 20\n"
        "links:\n  - {from: inputs.message, to: agent.message}\n  - {from: agent.reply, to: outputs.reply}\n"
    )
    workflow = load_workflow(path)
    agent = workflow.steps["agent"]
    assert isinstance(agent, Agent)
    model = ScriptedModel(
        [
            call("get_current_time", timezone="Mars/Olympus"),
            call("get_current_time", timezone="Asia/Tokyo"),
            "It is evening in Tokyo.",
        ]
    )
    agent.model = model
    before = _children()
    try:
        assert await workflow.run(message="time in Tokyo?") == {"reply": "It is evening in Tokyo."}
        assert set(agent.tools) == {"get_current_time"}
        assert len(_children() - before) == 1  # the server, started once
        results = [m for m in model.requests[-1].messages if m.role == "tool"]
        assert results[0].is_error and "Mars/Olympus" in results[0].content
        assert not results[1].is_error and "Asia/Tokyo" in results[1].content
        # The tool's schema reached the model as the server gave it.
        (spec,) = model.requests[0].tools
        assert spec.parameters["required"] == ["timezone"]
    finally:
        await workflow.aclose()
    deadline = time.monotonic() + 10
    while _children() - before and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not (_children() - before), "closing the workflow stops the MCP server"


def test_mcp_server_entries_are_checked_with_their_path(tmp_path: Path) -> None:
    import nanobrain as nb

    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\ninputs: {message: str}\noutputs: {reply: str}\nsteps:\n"
        "  agent:\n    kind: agent\n    mcp_servers:\n      - {command: [x], url: 'http://127.0.0.1:1/mcp'}\n"
        "links:\n  - {from: inputs.message, to: agent.message}\n  - {from: agent.reply, to: outputs.reply}\n"
    )
    with pytest.raises(nb.ConfigError) as caught:
        load_workflow(path)
    assert "steps.agent.mcp_servers" in str(caught.value) and "either command" in str(caught.value)


async def test_a_hanging_tool_fails_within_its_timeout_and_the_agent_hears_it() -> None:
    toolset = MCPToolset(PEER, timeout=1.5, connect_timeout=20)
    agent = Agent("a", model=ScriptedModel([call("hang"), call("echo", text="still here"), "done"]), tools=[toolset])
    try:
        started = time.monotonic()
        assert await agent.ask(message="go") == "done"
        assert time.monotonic() - started < 10
        results = [m for m in agent.model.requests[-1].messages if m.role == "tool"]  # type: ignore[attr-defined]
        assert results[0].is_error and "did not answer within 1.5s" in results[0].content
        assert results[1].content == "still here"
    finally:
        await agent.aclose()


async def test_a_crashing_server_is_a_clear_error_not_a_hang() -> None:
    toolset = MCPToolset(PEER, timeout=10, connect_timeout=20, name="peer")
    try:
        tools = {t.name: t for t in await toolset.tools()}
        started = time.monotonic()
        crashed = await tools["crash"].call({})
        assert crashed.is_error and "peer" in crashed.content
        later = await tools["echo"].call({"text": "x"})
        assert later.is_error and "peer" in later.content
        assert time.monotonic() - started < 10
    finally:
        await toolset.aclose()


async def test_a_server_that_cannot_start_or_never_answers_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="could not be started or reached"):
        await MCPToolset(["/nonexistent/mcp-server"], connect_timeout=5).tools()
    silent = MCPToolset([sys.executable, "-c", "import time; time.sleep(60)"], connect_timeout=1, name="silent")
    started = time.monotonic()
    with pytest.raises(ProtocolError, match="'silent' did not connect within 1s"):
        await silent.tools()
    assert time.monotonic() - started < 6
    with pytest.raises(ProtocolError, match="has no tool 'nope'"):
        await MCPToolset(TIME_SERVER, tools=["nope"], connect_timeout=20).tools()


def test_child_env_is_used() -> None:
    assert "PYTHONPATH" in child_env()
