"""NanoBrain workflows served over MCP, driven by the official `mcp` client: in process, over
Streamable HTTP (uvicorn) and over stdio (`nanobrain mcp FILE.yaml`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

import nanobrain as nb
from nanobrain.core.schemas import input_schema, output_schema
from nanobrain.llm.tools import tool
from nanobrain.protocols.mcp import mcp_server

from .conftest import child_env, free_port, serving


@nb.step
def upper(text: str) -> str:
    return text.upper()


@nb.step
def exclaim(text: str, times: int = 1) -> str:
    return text + "!" * times


def shout() -> nb.Workflow:
    workflow = nb.Workflow.sequence(upper, exclaim, name="shout")
    workflow.description = "Shout a text"
    return workflow


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@nb.step
def explode(text: str) -> str:
    raise RuntimeError(f"cannot take {text!r}")


async def test_tools_are_listed_with_the_workflows_schemas_and_calls_report_progress() -> None:
    workflow = shout()
    async with Client(mcp_server([workflow, add, explode])) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert set(listed) == {"shout", "add", "explode"}
        assert listed["shout"].description == "Shout a text"
        assert listed["shout"].input_schema == input_schema(workflow)
        assert listed["shout"].output_schema == output_schema(workflow)
        assert listed["add"].input_schema["required"] == ["a", "b"]

        progress: list[tuple[float, float | None, str | None]] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append((done, total, message))

        result = await client.call_tool("shout", {"text": "hi"}, progress_callback=on_progress)
        assert not result.is_error
        assert result.structured_content == {"result": "HI!"}
        assert result.content[0].text == "HI!"  # type: ignore[union-attr]
        assert progress == [(1.0, 2.0, "shout/upper finished"), (2.0, 2.0, "shout/exclaim finished")]

        assert (await client.call_tool("add", {"a": 2, "b": 3})).content[0].text == "5"  # type: ignore[union-attr]


async def test_bad_calls_are_tool_errors_that_say_what() -> None:
    async with Client(mcp_server([shout(), explode])) as client:
        wrong = await client.call_tool("shout", {"txt": "hi"})
        assert wrong.is_error
        text = wrong.content[0].text  # type: ignore[union-attr]
        assert "text: Field required" in text and "txt: Extra inputs are not permitted" in text
        failed = await client.call_tool("explode", {"text": "boom"})
        assert failed.is_error and "cannot take 'boom'" in failed.content[0].text  # type: ignore[union-attr]
        unknown = await client.call_tool("nope", {})
        assert unknown.is_error and "unknown tool 'nope'" in unknown.content[0].text  # type: ignore[union-attr]


async def test_streamable_http_app_serves_the_official_client() -> None:
    port = free_port()
    code = (
        "import uvicorn; from tests.protocols.test_mcp_server import shout; "
        "from nanobrain.protocols.mcp import mcp_server, mcp_streamable_http_app; "
        f"uvicorn.run(mcp_streamable_http_app(mcp_server(shout())), host='127.0.0.1', port={port}, "
        "log_level='warning')"
    )
    with serving(code, port):
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            (listed,) = (await client.list_tools()).tools
            assert listed.name == "shout"
            result = await client.call_tool("shout", {"text": "web"})
            assert result.structured_content == {"result": "WEB!"}


EXAMPLE = """\
name: greet
description: Greet someone by name
inputs: {name: str}
outputs: {greeting: str}
steps:
  hello:
    function: tests.protocols.test_mcp_server:hello
links:
  - {from: inputs.name, to: hello.name}
  - {from: hello.result, to: outputs.greeting}
"""


def hello(name: str) -> str:
    return f"Hello, {name}!"


async def test_nanobrain_mcp_command_serves_a_yaml_workflow_over_stdio(tmp_path: Path) -> None:
    path = tmp_path / "greet.yaml"
    path.write_text(EXAMPLE)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "nanobrain", "mcp", str(path)], env=child_env(), cwd=str(tmp_path)
    )
    async with Client(params, read_timeout_seconds=30) as client:
        (listed,) = (await client.list_tools()).tools
        assert listed.name == "greet" and listed.description == "Greet someone by name"
        assert listed.input_schema["required"] == ["name"]
        result = await client.call_tool("greet", {"name": "Ada"})
        assert result.structured_content == {"greeting": "Hello, Ada!"}


def test_nanobrain_mcp_command_reports_a_bad_file_without_traceback(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "nanobrain", "mcp", str(tmp_path / "missing.yaml")],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "file not found" in done.stderr and "Traceback" not in done.stderr


def test_two_tools_with_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="two MCP tools are named 'shout'"):
        mcp_server([shout(), shout()])
