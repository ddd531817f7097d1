"""`kind: agent` in YAML builds the same Agent as Python; bad agent config is reported with its path."""

from __future__ import annotations

from pathlib import Path

import pytest

import nanobrain as nb
from nanobrain.agents.agent import Agent
from nanobrain.config import load_workflow
from nanobrain.llm import ScriptedModel, call

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_assistant_example_runs_a_two_tool_loop_in_python_and_yaml() -> None:
    from examples import assistant

    for workflow in (assistant.build(), load_workflow(EXAMPLES / "assistant.yaml")):
        step = workflow.steps["assistant"]
        assert isinstance(step, Agent)
        assert set(step.tools) == {"convert_temperature", "word_count"}
        model = ScriptedModel(
            [
                call("convert_temperature", celsius=21),
                call("word_count", text="twenty one degrees"),
                "21 °C is 69.8 °F (3 words).",
            ]
        )
        step.model = model
        assert await workflow.run(message="21 C in F, and count my words") == {"reply": "21 °C is 69.8 °F (3 words)."}
        tool_results = [m.content for m in model.requests[-1].messages if m.role == "tool"]
        assert tool_results == ["69.8", "3"]


def test_agent_config_errors_name_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\ninputs: {message: str}\noutputs: {reply: str}\nsteps:\n"
        "  a:\n    kind: agent\n    model: openai:gpt-4o-mini\n    tools: [examples.assistant:nope]\n"
        "    max_rounds: 0\n"
        "links:\n  - {from: inputs.message, to: a.message}\n  - {from: a.reply, to: outputs.reply}\n"
    )
    with pytest.raises(nb.ConfigError) as caught:
        load_workflow(path)
    text = str(caught.value)
    assert "steps.a.max_rounds" in text and ":9:" in text
    path.write_text(path.read_text().replace("    max_rounds: 0\n", ""))
    with pytest.raises(nb.ConfigError) as caught:
        load_workflow(path)
    text = str(caught.value)
    assert "steps.a.tools[0]" in text and "no attribute 'nope'" in text
    assert "steps.a.model" in text and "OPENAI_API_KEY" in text
