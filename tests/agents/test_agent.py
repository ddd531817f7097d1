"""Agent logic with the scripted model: tool loop, tool errors, structured output, streaming, limits, memory."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

import nanobrain as nb
from nanobrain.agents.agent import Agent, AgentError
from nanobrain.llm import Message, ScriptedModel, call


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    await asyncio.sleep(0)
    return a * b


def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"boom: {reason}")


class Answer(BaseModel):
    value: int
    explanation: str


async def test_multi_round_tool_loop_feeds_results_back() -> None:
    model = ScriptedModel([call("add", a=2, b=3), call("multiply", a=5, b=4), "The answer is 20."])
    agent = Agent("calc", model=model, tools=[add, multiply], system="Use tools.")
    assert await agent.ask(message="(2+3)*4?") == "The answer is 20."
    assert len(model.requests) == 3
    last = model.requests[-1].messages
    assert [m.role for m in last] == ["system", "user", "assistant", "tool", "assistant", "tool"]
    assert last[3].content == "5" and last[5].content == "20"
    assert {t.name for t in model.requests[0].tools} == {"add", "multiply"}


async def test_parallel_tool_calls_in_one_round() -> None:
    model = ScriptedModel([[call("add", a=1, b=1), call("multiply", a=3, b=3)], "2 and 9"])
    agent = Agent("calc", model=model, tools=[add, multiply])
    assert await agent.ask(message="both") == "2 and 9"
    tool_messages = [m for m in model.requests[1].messages if m.role == "tool"]
    assert [m.content for m in tool_messages] == ["2", "9"]


async def test_tool_errors_go_back_to_the_model_not_up_the_stack() -> None:
    model = ScriptedModel([call("explode", reason="x"), call("add", a="not a number", b=1), call("nope"), "gave up"])
    agent = Agent("calc", model=model, tools=[add, explode])
    assert await agent.ask(message="try") == "gave up"
    results = [m for m in model.requests[-1].messages if m.role == "tool"]
    assert all(m.is_error for m in results)
    assert "boom: x" in results[0].content
    assert "invalid arguments for add" in results[1].content and "a:" in results[1].content
    assert "no tool named 'nope'" in results[2].content


async def test_round_limit_is_an_error() -> None:
    model = ScriptedModel(respond=lambda request: call("add", a=1, b=1))
    agent = Agent("looper", model=model, tools=[add], max_rounds=3)
    with pytest.raises(AgentError, match="did not finish within 3 model round"):
        await agent.ask(message="loop")
    assert len(model.requests) == 3


async def test_structured_output_validates_and_reasks_on_failure() -> None:
    model = ScriptedModel(['{"value": "twelve"}', 'Sure: {"value": 12, "explanation": "6*2"}'])
    agent = Agent("structured", model=model, output_type=Answer)
    answer = await agent.ask(message="6*2")
    assert answer == Answer(value=12, explanation="6*2")
    correction = model.requests[1].messages[-1]
    assert correction.role == "user" and "did not match" in correction.content
    assert model.requests[0].response_schema == Answer.model_json_schema()


async def test_structured_output_gives_up_after_max_reasks() -> None:
    model = ScriptedModel(["nope", "still no", "never"])
    agent = Agent("structured", model=model, output_type=Answer, max_reasks=1)
    with pytest.raises(AgentError, match="did not match Answer after 1 correction"):
        await agent.ask(message="x")
    assert len(model.requests) == 2


async def test_memory_keeps_turns_per_session() -> None:
    model = ScriptedModel(["hello Ada", "your name is Ada", "who?"])
    agent = Agent("chat", model=model)
    await agent.ask(message="I am Ada", session="s1")
    await agent.ask(message="what is my name?", session="s1")
    await agent.ask(message="what is my name?", session="s2")
    assert [m.content for m in model.requests[1].messages] == ["I am Ada", "hello Ada", "what is my name?"]
    assert [m.content for m in model.requests[2].messages] == ["what is my name?"]


async def test_prompt_template_fields_become_inputs() -> None:
    model = ScriptedModel(["ok"])
    agent = Agent("t", model=model, prompt="Translate to {language}: {text}")
    assert set(agent.inputs) == {"language", "text", "session"}
    assert agent.required_inputs == ("language", "text")
    await agent.ask(language="French", text="hello")
    assert model.requests[0].messages[-1] == Message.user("Translate to French: hello")


async def test_agent_in_a_workflow_streams_tokens_and_reports_usage() -> None:
    model = ScriptedModel([call("add", a=2, b=2), "two plus two is four"], chunk_size=3)
    agent = Agent("calc", model=model, tools=[add])
    inner = nb.Workflow.sequence(agent, name="inner")
    outer = nb.Workflow.sequence(inner, name="outer")
    events = [e async for e in outer.stream(message="2+2")]
    tokens = [e for e in events if isinstance(e, nb.Token)]
    assert "".join(t.text for t in tokens) == "two plus two is four"
    assert len(tokens) > 3
    # Tokens carry the same path as the step's own events, and the step's name.
    started = next(e for e in events if isinstance(e, nb.StepStarted) and e.step == "calc")
    assert (tokens[0].path, tokens[0].step) == (started.path, "calc") == ("outer/inner", "calc")
    calls = [e for e in events if isinstance(e, nb.Custom) and e.name == "llm_call"]
    assert len(calls) == 2
    finished = events[-1]
    assert isinstance(finished, nb.RunFinished)
    assert finished.outputs == {"reply": "two plus two is four"}
    # Each run reports its own usage; the nested run's is added to the outer run's.
    inner_finished = next(e for e in events if isinstance(e, nb.RunFinished) and e.path == "outer/inner")
    assert inner_finished.usage == finished.usage
    expected_prompt = sum(sum(len(m.content.split()) for m in request.messages) for request in model.requests)
    assert finished.usage["prompt_tokens"] == expected_prompt
    assert finished.usage["completion_tokens"] == sum(e.data["completion_tokens"] for e in calls) > 0


async def test_agents_steps_and_workflows_as_tools() -> None:
    helper_model = ScriptedModel(["the helper says hi"])
    helper = Agent("helper", model=helper_model)
    doubler = nb.Workflow.sequence(nb.FunctionStep(lambda value: value * 2, name="double"), name="doubler")
    model = ScriptedModel([[call("helper", message="greet"), call("doubler", value=21)], "done"])
    agent = Agent("boss", model=model, tools=[helper, doubler])
    assert await agent.ask(message="go") == "done"
    results = [m.content for m in model.requests[1].messages if m.role == "tool"]
    assert results == ["the helper says hi", "42"]


def test_bad_agent_configuration_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_rounds"):
        Agent("a", model=ScriptedModel(), max_rounds=0)
    with pytest.raises(ValueError, match="two tools are named 'add'"):
        Agent("a", model=ScriptedModel(), tools=[add, add])
    with pytest.raises(ValueError, match="reserved"):
        Agent("a", model=ScriptedModel(), prompt="{session}")


async def test_running_out_of_script_is_an_error_not_an_answer() -> None:
    agent = Agent("a", model=ScriptedModel([]))
    with pytest.raises(nb.NanoBrainError, match="no scripted reply left"):
        await agent.ask(message="hi")


async def test_the_last_round_asks_for_an_answer_without_tools() -> None:
    model = ScriptedModel([call("add", a=1, b=1), call("add", a=2, b=2), "four, finally"])
    agent = Agent("calc", model=model, tools=[add], max_rounds=3)
    assert await agent.ask(message="loop") == "four, finally"
    assert [r.tool_choice for r in model.requests] == ["auto", "auto", "none"]


async def test_runs_without_a_session_share_no_memory() -> None:
    model = ScriptedModel(["noted", "I know nothing about that"])
    agent = Agent("chat", model=model)
    workflow = nb.Workflow.sequence(agent, name="w")
    await workflow.run(message="my secret is 42")
    await workflow.run(message="what is the secret?")
    assert [m.content for m in model.requests[1].messages] == ["what is the secret?"]


# -- swapping the model -----------------------------------------------------------------------------
async def test_the_model_can_be_swapped_through_the_public_attribute() -> None:
    agent = Agent(model=ScriptedModel(["first"]))
    assert await agent.ask(message="hi") == "first"
    replacement = ScriptedModel(["second"])
    agent.model = replacement
    assert agent.model is replacement
    assert await agent.ask(message="hi") == "second"


async def test_override_uses_the_model_inside_the_block_and_restores_it_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NANOBRAIN_MODEL", raising=False)
    original = ScriptedModel(["outside", "after the failure"])
    agent = Agent(model=original)
    with agent.override(model=ScriptedModel(["inside"])) as same:
        assert same is agent
        assert await agent.ask(message="hi") == "inside"
    assert agent.model is original
    with pytest.raises(RuntimeError), agent.override(model=ScriptedModel([])):
        raise RuntimeError("the block failed")
    assert agent.model is original
    assert await agent.ask(message="hi") == "outside"


def test_the_model_label_does_not_resolve_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NANOBRAIN_MODEL", raising=False)
    agent = Agent(model="openai:gpt-4o-mini")
    assert agent.model_label == "openai:gpt-4o-mini"
    agent.model = None
    assert agent.model_label == "local"
    agent.model = ScriptedModel(["x"])
    assert agent.model_label == agent.model.label
