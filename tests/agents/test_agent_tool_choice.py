"""`tool_choice` and tool calls written as text: the answer is never a raw tool-call JSON string."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nanobrain as nb
from nanobrain.agents.agent import Agent, AgentError, written_tool_calls
from nanobrain.config import load_workflow
from nanobrain.llm import Message, ScriptedModel, call


def convert_temperature(celsius: float) -> float:
    """Convert a temperature from Celsius to Fahrenheit."""
    return round(celsius * 9 / 5 + 32, 2)


def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


def agent_with(model: ScriptedModel, **options: object) -> Agent:
    return Agent("assistant", model=model, tools=[convert_temperature, word_count], **options)  # type: ignore[arg-type]


async def test_required_tool_choice_is_asked_until_a_tool_runs_then_auto() -> None:
    model = ScriptedModel([call("convert_temperature", celsius=21), "69.8 F"])
    assert await agent_with(model, tool_choice="required").ask(message="21 C in F?") == "69.8 F"
    assert [r.tool_choice for r in model.requests] == ["required", "auto"]


async def test_a_named_tool_choice_is_sent_as_that_name() -> None:
    model = ScriptedModel([call("word_count", text="a b c"), "3 words"])
    assert await agent_with(model, tool_choice="word_count").ask(message="count: a b c") == "3 words"
    assert [r.tool_choice for r in model.requests] == ["word_count", "auto"]


async def test_providers_enforce_required_so_a_text_answer_despite_it_is_the_answer() -> None:
    model = ScriptedModel(["I think 70 F", call("convert_temperature", celsius=21), "69.8 F"])
    assert await agent_with(model, tool_choice="required").ask(message="21 C in F?") == "I think 70 F"
    # The provider enforces the choice; a model answering anyway has answered: one call only.
    assert [r.tool_choice for r in model.requests] == ["required"]


async def test_tool_choice_none_offers_no_tool_calls() -> None:
    model = ScriptedModel(["hello"])
    assert await agent_with(model, tool_choice="none").ask(message="hi") == "hello"
    assert [r.tool_choice for r in model.requests] == ["none"]


def test_a_tool_choice_the_agent_cannot_meet_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"tool_choice requires the tool 'weather'.*convert_temperature, word_count"):
        agent_with(ScriptedModel(), tool_choice="weather")
    with pytest.raises(ValueError, match="tool_choice requires a tool call, but its tools are: none"):
        Agent("plain", model=ScriptedModel(), tool_choice="required")
    with pytest.raises(ValueError, match="max_rounds of at least 2"):
        agent_with(ScriptedModel(), tool_choice="required", max_rounds=1)


def test_yaml_tool_choice_is_built_and_a_bad_one_names_its_path(tmp_path: Path) -> None:
    document = (
        "name: w\ninputs: {message: str}\noutputs: {reply: str}\nsteps:\n"
        "  assistant:\n    kind: agent\n"
        "    tools: [tests.agents.test_agent_tool_choice:convert_temperature]\n"
        "    tool_choice: CHOICE\n"
        "links:\n  - {from: inputs.message, to: assistant.message}\n  - {from: assistant.reply, to: outputs.reply}\n"
    )
    path = tmp_path / "w.yaml"
    path.write_text(document.replace("CHOICE", "required"))
    step = load_workflow(path).steps["assistant"]
    assert isinstance(step, Agent) and step.tool_choice == "required"
    path.write_text(document.replace("CHOICE", "weather"))
    with pytest.raises(nb.ConfigError) as caught:
        load_workflow(path)
    assert "steps.assistant.tool_choice" in str(caught.value)
    assert "the tool 'weather'" in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        '{"tool": "convert_temperature", "arguments": {"celsius": 21}}',
        '  {"name": "convert_temperature", "parameters": {"celsius": 21}}\n',
        '```json\n{"tool": "convert_temperature", "arguments": {"celsius": 21}}\n```',
        '[{"name": "convert_temperature", "arguments": {"celsius": 21}}]',
    ],
)
def test_tool_calls_written_as_text_are_recognised(text: str) -> None:
    (found,) = written_tool_calls(text)
    assert (found.name, found.arguments) == ("convert_temperature", {"celsius": 21})


@pytest.mark.parametrize(
    "text",
    [
        "21 C is 69.8 F.",
        '{"name": "Paris"}',
        '{"answer": "Paris"}',
        '{"tool": "convert_temperature", "arguments": {"celsius": 21}} and then some words',
        '{"tool": "convert_temperature", "arguments": "21"}',
        "{not json",
        "",
    ],
)
def test_answers_that_are_not_only_tool_calls_are_left_alone(text: str) -> None:
    assert written_tool_calls(text) == ()


async def test_a_tool_call_written_as_text_is_run_as_the_call_it_is() -> None:
    raw = json.dumps({"tool": "convert_temperature", "arguments": {"celsius": 21}})
    model = ScriptedModel([raw, "21 C is 69.8 F."])
    result = await agent_with(model).run_turn("21 C in F?")
    assert result.value == "21 C is 69.8 F."
    roles = [(m.role, m.content) for m in result.messages]
    assert roles[1] == ("assistant", "") and result.messages[1].tool_calls[0].name == "convert_temperature"
    assert roles[2] == ("tool", "69.8")


async def test_a_written_tool_call_where_tools_are_not_offered_is_asked_again_in_words() -> None:
    raw = '{"tool": "convert_temperature", "arguments": {"celsius": 21}}'
    model = ScriptedModel([call("convert_temperature", celsius=21), raw, "It is 69.8 F."])
    result = await agent_with(model, max_rounds=2).run_turn("21 C in F?")
    assert result.value == "It is 69.8 F."
    assert [r.tool_choice for r in model.requests] == ["auto", "none", "none"]
    # The re-ask carries a request for words, and neither it nor the raw answer stays in the turn.
    assert "plain words" in model.requests[2].messages[-1].content
    assert raw not in [m.content for m in result.messages]
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "assistant"]


async def test_a_model_that_keeps_writing_tool_calls_without_tools_is_an_error_not_an_answer() -> None:
    raw = '{"tool": "convert_temperature", "arguments": {"celsius": 21}}'
    model = ScriptedModel([raw] * 3)
    with pytest.raises(AgentError, match="tool call written as text"):
        await agent_with(model, tool_choice="none", max_reasks=2).ask(message="21 C in F?")
    assert len(model.requests) == 3


async def test_an_agent_without_tools_answers_json_that_looks_like_a_call_as_it_is() -> None:
    raw = '{"tool": "x", "arguments": {}}'
    agent = Agent("plain", model=ScriptedModel([raw]))
    assert await agent.ask(message="show me the format") == raw


async def test_a_written_call_in_the_turn_keeps_streamed_history_consistent() -> None:
    raw = '{"name": "word_count", "arguments": {"text": "one two"}}'
    model = ScriptedModel([Message.assistant(raw), "2"])
    result = await agent_with(model).run_turn("count")
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "assistant"]
    assert result.messages[2].content == "2"
