"""Every guide's code runs and does what its page says (the pages include these very files)."""

from __future__ import annotations

import re
import subprocess
import sys
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
    pages = "".join(p.read_text() for p in (REPO / "docs" / "guides").glob("*.md"))
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
