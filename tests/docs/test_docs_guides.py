"""Every guide's code runs and does what its page says (the pages include these very files)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nanobrain.config import load_workflow
from nanobrain.llm import ScriptedModel

REPO = Path(__file__).resolve().parents[2]
CODE = REPO / "docs" / "guides" / "code"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NANOBRAIN_HOME", str(tmp_path / "home"))
    return tmp_path


def test_every_guide_code_file_is_included_by_a_page_and_tested_here() -> None:
    pages = "".join(p.read_text() for p in (REPO / "docs").rglob("*.md"))
    tests = Path(__file__).read_text()
    for path in sorted(CODE.glob("*.py")) + sorted(CODE.glob("*.yaml")):
        assert f'"guides/code/{path.name}"' in pages, f"{path.name} is on no guide page"
        assert path.stem in tests, f"{path.name} is not run by this test"


async def test_first_workflow_python_and_yaml_agree() -> None:
    from docs.guides.code import first_workflow

    from_python = await first_workflow.build().run(text="  hello   nanobrain ")
    from_yaml = await load_workflow(CODE / "first_workflow.yaml").run(text="  hello   nanobrain ")
    assert from_python == from_yaml == {"result": "HELLO NANOBRAIN!"}


def test_first_workflow_runs_from_the_command_line_as_the_guide_says() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nanobrain", "run", str(CODE / "first_workflow.yaml"), "--json",
         "--input", "text=  hello   nanobrain "],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert '"HELLO NANOBRAIN!"' in done.stdout


async def test_agent_guide_calls_the_tool_and_answers_with_a_validated_object() -> None:
    from docs.guides.code import agent_tools

    model = agent_tools.scripted()
    result = await agent_tools.build(model).run(message="What is 21 C in Fahrenheit?")
    assert result["reading"] == agent_tools.Reading(celsius=21, fahrenheit=69.8)
    # The second request carries the tool's real result back to the model.
    tool_messages = [m for m in model.requests[1].messages if m.role == "tool"]
    assert [float(m.content) for m in tool_messages] == [pytest.approx(69.8)]


async def test_durable_guide_waits_for_approval_and_does_not_redo_the_draft() -> None:
    from docs.guides.code import durable_approval

    from nanobrain.infrastructure.data.journal import SqlJournalStore

    durable_approval.drafts_written.clear()
    assert await durable_approval.start("guide-1") == {}
    store = SqlJournalStore.default()
    try:
        record = await store.get("guide-1")
        assert record is not None and record.status == "waiting" and record.where == "input approval"
    finally:
        await store.aclose()
    assert await durable_approval.approve("guide-1") == {"result": "PUBLISHED Release note: faster joins."}
    # Written once, in process one; process two replayed it from the journal.
    assert durable_approval.drafts_written == ["guide-1/draft/1"]


async def test_serving_guide_answers_a_workflow_run_and_an_openai_client(home: Path) -> None:
    from docs.guides.code import serve_http

    model = ScriptedModel(["Hello from the scripted model."])
    answers = await serve_http.serve_and_call(model, home)
    assert answers["run"]["status"] == "succeeded"
    assert answers["run"]["outputs"] == {"result": "HI THERE!"}
    assert answers["chat"] == "Hello from the scripted model."
    assert model.requests[-1].messages[-1].content == "Hello!"


async def test_observability_guide_counts_the_run_and_traces_each_step() -> None:
    from docs.guides.code import metrics_traces

    observed = await metrics_traces.observe()
    assert observed["result"] == {"result": "OBSERVE ME!"}
    assert re.search(r'^nanobrain_runs_finished_total\{workflow="first"\} 1\.0$', observed["metrics"], re.M)
    assert sorted(observed["spans"]) == ["run first", "step normalize", "step shout"]


def test_choosing_model_guide_maps_strings_to_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    from docs.guides.code import choosing_model

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert choosing_model.provider_for("openai-compatible:m@http://127.0.0.1:8000/v1") == "OpenAICompatibleProvider"
    assert "needs OPENAI_API_KEY" in choosing_model.provider_for("openai:gpt-4o-mini")
    assert choosing_model.provider_for("nonsense:x").startswith("error: unknown model")


async def test_choosing_model_guide_talks_to_a_real_openai_compatible_server(home: Path) -> None:
    """The server is NanoBrain's own (`nanobrain serve`), answering with a scripted model."""
    from docs.guides.code import choosing_model, serve_http

    model = ScriptedModel(["Paris."])
    async with serve_http.serving(model, home) as base:
        assert await choosing_model.ask(base, "Capital of France?") == "Paris."
    assert model.requests[-1].messages[-1].content == "Capital of France?"


async def test_parallel_agents_guide_fails_over_from_a_broken_endpoint() -> None:
    """The page includes examples/parallel_chat.py; one of its three models always fails."""
    from examples import parallel_chat

    from nanobrain.llm.errors import ServerError

    broken = ScriptedModel(respond=lambda request: ServerError("down", provider="alpha", status=503))
    models = {
        "alpha": broken,
        "beta": ScriptedModel(respond=lambda request: "beta answers"),
        "gamma": ScriptedModel(respond=lambda request: "gamma answers"),
    }
    questions = [f"question {i}" for i in range(6)]
    result = await parallel_chat.build(models).run(messages=questions)
    assert len(result["replies"]) == len(questions)
    assert set(result["replies"]) <= {"beta answers", "gamma answers"}
    assert broken.requests  # the broken endpoint was tried, and its requests went elsewhere


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
async def notes_store(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    from tests.conftest import require
    from tests.infrastructure.conftest import POSTGRES_URL, REDIS_URL, _reachable, unique_name

    if request.param == "sqlite":
        yield "sqlite+aiosqlite:///state/notes.db"  # relative to the workflow file
        return
    prefix = unique_name()
    if request.param == "postgresql":
        require(_reachable("127.0.0.1", 5432), "PostgreSQL is not reachable on 127.0.0.1:5432")
        yield f"{POSTGRES_URL}?schema={prefix}"
        from nanobrain.infrastructure.data.database import Database

        db = Database(POSTGRES_URL, schema=prefix)
        await db.drop_schema()
        await db.aclose()
        return
    require(_reachable("127.0.0.1", 6379), "Redis is not reachable on 127.0.0.1:6379")
    yield f"{REDIS_URL}?prefix={prefix}:"
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(match=prefix + ":*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_persistence_guide_keeps_notes_across_processes(
    notes_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nanobrain.infrastructure.data.persistent_units import load_persistent

    for name in ("persistence.yaml", "first_workflow.py"):  # a copy: the SQLite file lands in tmp_path
        (tmp_path / name).write_text((CODE / name).read_text())
    monkeypatch.setenv("NOTES_STORE", notes_store)
    for note in (" buy   milk", "call Ada"):
        workflow = str(tmp_path / "persistence.yaml")
        command = [sys.executable, "-m", "nanobrain", "run", workflow, "--input", f"note={note}"]
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    wf = load_workflow(tmp_path / "persistence.yaml")
    await load_persistent(wf)
    assert await wf.outputs["notes"].items() == ["buy milk", "call Ada"]  # type: ignore[attr-defined]
    assert wf.outputs["last"].get() == "call Ada"
    await wf.outputs["notes"].store.aclose()  # type: ignore[attr-defined]
    # The page's own Python block reads them back the same way.
    page = (REPO / "docs" / "guides" / "persistence.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", page, re.S)
    namespace: dict = {}
    exec(block.replace("docs/guides/code/persistence.yaml", str(tmp_path / "persistence.yaml")), namespace)
    assert await namespace["notes"]() == ["buy milk", "call Ada"]


async def test_custom_chat_guide_changes_the_prompt_and_the_routing(home: Path) -> None:
    from docs.guides.code import custom_chat

    config = custom_chat.write_custom_chat(home)
    model = ScriptedModel(["Arr, hello!", "SELECT 1;"])
    assert await custom_chat.ask(config, model, home, "Hello!") == "Arr, hello!"
    assert await custom_chat.ask(config, model, home, "Write an sql query") == "SELECT 1;"
    greeting, sql = model.requests
    assert greeting.messages[0].content.startswith("You are a pirate.")
    assert sql.messages[0].content.startswith("You are NanoBrain's programming assistant.")  # routed to the coder


async def test_a2a_guide_calls_a_served_workflow_over_the_protocol() -> None:
    from docs.guides.code import a2a_agents

    assert await a2a_agents.main() == {"reply": "OVER THE WIRE!"}


async def test_mcp_guide_serves_a_workflow_as_a_tool_and_gives_an_agent_a_real_servers_tool() -> None:
    pytest.importorskip("mcp_server_time", reason="needs mcp-server-time (test extra)")
    from docs.guides.code import mcp_tools

    served = await mcp_tools.call_workflow_as_tool("  hello   mcp ")
    assert served == {"tools": ["first"], "result": {"result": "HELLO MCP!"}}
    model = mcp_tools.scripted()
    workflow = mcp_tools.clock(model)
    try:
        result = await workflow.run(message="What time is it in Tokyo?")
    finally:
        await workflow.aclose()
    # The time server's real answer went back to the model, which repeated it.
    (tool_message,) = [m for m in model.requests[-1].messages if m.role == "tool"]
    assert not tool_message.is_error and "Asia/Tokyo" in tool_message.content
    assert result == {"reply": f"The time server said: {tool_message.content}"}
    (spec,) = model.requests[0].tools
    assert spec.name == "get_current_time" and spec.parameters["required"] == ["timezone"]


async def test_dask_guide_runs_each_item_on_a_worker_process() -> None:
    pytest.importorskip("distributed", reason="the Dask executor needs the dask extra")
    import os

    from docs.guides.code import dask_scale_out

    import nanobrain as nb
    from nanobrain.core.executors import DaskExecutor

    limits = [10, 100, 100_000]
    executor = DaskExecutor(n_workers=2)
    try:
        result = await dask_scale_out.build(executor).run(limit=limits)
        # The map alone, on the same cluster: which process counted each item.
        items = nb.Workflow.sequence(nb.Map(dask_scale_out.count_primes, executor=executor), name="items")
        counted = (await items.run(limit=limits))["result"]
        client = await executor.client()
        workers = set((await client.run(os.getpid)).values())
    finally:
        await executor.aclose()
    assert result == {"result": 4 + 25 + 9592}
    assert [item["primes"] for item in counted] == [4, 25, 9592]
    assert {item["pid"] for item in counted} <= workers and os.getpid() not in workers


def test_dask_guide_yaml_gives_the_same_total_from_the_command_line() -> None:
    pytest.importorskip("distributed", reason="the Dask executor needs the dask extra")
    done = subprocess.run(
        [sys.executable, "-m", "nanobrain", "run", str(CODE / "dask_scale_out.yaml"), "--json",
         "--input-json", '{"limit": [10, 100, 100000]}'],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"result": 4 + 25 + 9592}


async def test_side_by_side_workflow_routes_questions_and_statements_alike_in_python_and_yaml() -> None:
    from docs.guides.code import side_by_side

    for text, expected in (("  hello   there ", "HELLO THERE!"), (" is it   on? ", "You asked: is it on?")):
        assert await side_by_side.build().run(text=text) == {"result": expected}
        assert await load_workflow(CODE / "side_by_side.yaml").run(text=text) == {"result": expected}


async def test_service_registry_guide_calls_an_agent_by_its_registered_name(tmp_path: Path) -> None:
    from docs.guides.code import service_registry
    from tests.infrastructure.services.backends import open_backend

    async for redis in open_backend("redis", tmp_path):
        before, reply, after = await service_registry.main(redis.url)
        assert (before, reply, after) == (["shouter"], {"reply": "FOUND BY NAME!"}, [])
    assert await service_registry.main() == (["shouter"], {"reply": "FOUND BY NAME!"}, [])  # memory://
