"""The OpenAI-compatible provider against a real server (llama.cpp + SmolLM2) and a tiny local HTTP server.

All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
import pytest
from pydantic import BaseModel
from tests.llm.conftest import free_port
from tests.llm.local_http import LocalServer, Received, Response

import nanobrain as nb
from nanobrain.agents.agent import Agent
from nanobrain.core.retry import RetryPolicy
from nanobrain.llm import (
    AuthError,
    BadRequest,
    ChatRequest,
    Finished,
    Message,
    ModelNotConfigured,
    ProviderError,
    RateLimited,
    ResilientProvider,
    ServerError,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Unreachable,
    Usage,
    collect,
    resolve_model,
)
from nanobrain.llm.openai_compat import OpenAICompatibleProvider

WEATHER = ToolSpec(
    "get_weather",
    "Get the current weather in a city.",
    {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city's name"}},
        "required": ["city"],
    },
)


def ask(text: str, **options: Any) -> ChatRequest:
    options.setdefault("max_tokens", 24)
    options.setdefault("temperature", 0.0)
    return ChatRequest((Message.system("You are a helpful assistant."), Message.user(text)), **options)


@pytest.fixture
async def smollm2(llama_server: str) -> AsyncIterator[OpenAICompatibleProvider]:
    provider = OpenAICompatibleProvider("smollm2", base_url=llama_server, timeout=60)
    yield provider
    await provider.aclose()


# -- a real server ---------------------------------------------------------------------------------
async def test_chat_completion_returns_text_and_usage(smollm2: OpenAICompatibleProvider) -> None:
    completion = await smollm2.complete(ask("What is the capital of France?"))
    assert completion.message.role == "assistant"
    assert completion.message.content.strip()
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0
    assert completion.finish_reason in ("stop", "length")


async def test_stream_yields_text_deltas_then_the_whole_completion(smollm2: OpenAICompatibleProvider) -> None:
    chunks = [chunk async for chunk in smollm2.stream(ask("Tell me about cats."))]
    deltas = [c for c in chunks if isinstance(c, TextDelta)]
    assert len(deltas) >= 3
    assert isinstance(chunks[-1], Finished)
    assert sum(isinstance(c, Finished) for c in chunks) == 1
    completion = chunks[-1].completion
    assert completion.message.content == "".join(d.text for d in deltas)
    assert completion.message.content.strip()
    # llama-cpp-python ignores stream_options.include_usage: its streams carry no usage (the
    # fake-server test below checks that usage is passed on when a server sends it).


async def test_forced_tool_call_returns_parsed_arguments(smollm2: OpenAICompatibleProvider) -> None:
    request = ask("What is the weather in Paris?", tools=(WEATHER,), tool_choice="get_weather", max_tokens=32)
    completion = await smollm2.complete(request)
    (call,) = completion.message.tool_calls
    assert call.name == "get_weather"
    assert isinstance(call.arguments, dict)
    assert isinstance(call.arguments.get("city"), str)
    assert call.id


async def test_forced_tool_call_streams_deltas_that_add_up_to_the_call(smollm2: OpenAICompatibleProvider) -> None:
    request = ask("What is the weather in Paris?", tools=(WEATHER,), tool_choice="get_weather", max_tokens=32)
    chunks = [chunk async for chunk in smollm2.stream(request)]
    deltas = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert deltas
    assert isinstance(chunks[-1], Finished)
    (call,) = chunks[-1].completion.message.tool_calls
    assert call.name == "get_weather"
    assert isinstance(call.arguments.get("city"), str)
    # The deltas alone rebuild the same call (names and ids are not repeated).
    assert "".join(d.name or "" for d in deltas) == "get_weather"
    assert json.loads("".join(d.arguments for d in deltas)) == call.arguments


async def test_a_conversation_with_a_tool_result_is_accepted(smollm2: OpenAICompatibleProvider) -> None:
    call = ToolCall("call_1", "get_weather", {"city": "Paris"})
    request = ChatRequest(
        (
            Message.system("You are a helpful assistant."),
            Message.user("What is the weather in Paris?"),
            Message.assistant("", (call,)),
            Message.tool(call, "Sunny, 21 degrees."),
        ),
        tools=(WEATHER,),
        max_tokens=24,
        temperature=0.0,
    )
    completion = await smollm2.complete(request)
    assert completion.message.content.strip()


async def test_an_agent_in_a_workflow_answers_and_streams_tokens(smollm2: OpenAICompatibleProvider) -> None:
    agent = Agent("chat", model=smollm2, system="You are a helpful assistant.", max_tokens=24, temperature=0.0)
    workflow = nb.Workflow.sequence(agent, name="chat")
    outputs = await workflow.run(message="Say hello to Ada.")
    assert isinstance(outputs["reply"], str) and outputs["reply"].strip()

    events = [event async for event in workflow.stream(message="Name three colors.")]
    tokens = [e for e in events if isinstance(e, nb.Token)]
    assert len(tokens) >= 3
    assert (tokens[0].path, tokens[0].step) == ("chat", "chat")
    finished = events[-1]
    assert isinstance(finished, nb.RunFinished)
    assert finished.outputs["reply"] == "".join(t.text for t in tokens)
    (llm_call,) = [e for e in events if isinstance(e, nb.Custom) and e.name == "llm_call"]
    assert llm_call.data["tool_calls"] == []


class Sum(BaseModel):
    value: int


async def test_structured_output_follows_the_schema(smollm2: OpenAICompatibleProvider) -> None:
    # llama-cpp-python knows only `json_object` + schema; the provider falls back to it once.
    request = ask("What is 2+2? Answer in JSON.", response_schema=Sum.model_json_schema(), max_tokens=32)
    completion = await smollm2.complete(request)
    assert isinstance(Sum.model_validate_json(completion.message.content).value, int)

    agent = Agent("adder", model=smollm2, output_type=Sum, max_tokens=32, temperature=0.0)
    answer = await agent.ask(message="What is 3+4?")
    assert isinstance(answer, Sum)


async def test_resolve_model_reaches_an_openai_compatible_server(
    llama_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    provider = resolve_model("openai-compatible:smollm2@" + llama_server)
    try:
        assert isinstance(provider, ResilientProvider)
        assert isinstance(provider.inner, OpenAICompatibleProvider)
        assert provider.inner.base_url == llama_server
        completion = await provider.complete(ask("Hi!", max_tokens=16))
        assert completion.message.content.strip()
    finally:
        await provider.aclose()


async def test_a_wrong_path_is_a_bad_request(llama_server: str) -> None:
    provider = OpenAICompatibleProvider("smollm2", base_url=llama_server.removesuffix("/v1") + "/nowhere")
    try:
        with pytest.raises(BadRequest, match="404") as info:
            await provider.complete(ask("Hi!"))
    finally:
        await provider.aclose()
    assert info.value.status == 404
    assert not info.value.retryable
    assert isinstance(info.value.__cause__, openai.NotFoundError)


# -- errors, against endpoints that fail on purpose --------------------------------------------------
async def test_a_closed_port_is_unreachable_and_says_where() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    provider = OpenAICompatibleProvider("any", base_url=base_url, timeout=5)
    try:
        with pytest.raises(Unreachable) as info:
            await provider.complete(ask("Hi!"))
        assert info.value.retryable
        assert base_url in str(info.value)
        assert "server is running" in str(info.value)
        assert isinstance(info.value.__cause__, openai.APIConnectionError)

        with pytest.raises(Unreachable):
            [chunk async for chunk in provider.stream(ask("Hi!"))]
    finally:
        await provider.aclose()


async def test_a_password_in_the_base_url_is_masked_in_errors() -> None:
    port = free_port()
    provider = OpenAICompatibleProvider("any", base_url=f"http://ada:s3cret-pw@127.0.0.1:{port}/v1", timeout=5)
    try:
        with pytest.raises(Unreachable) as info:
            await provider.complete(ask("Hi!"))
    finally:
        await provider.aclose()
    assert f"cannot reach http://ada:***@127.0.0.1:{port}/v1" in str(info.value)
    assert "s3cret-pw" not in str(info.value)


Reply = tuple[int, dict[str, Any] | str] | None  # None: never answer
Responder = Callable[[Received], Reply]


class FakeServer(LocalServer):
    """Answers each request with `respond(request)`: JSON for a dict, an event stream for a str."""

    def __init__(self, respond: Responder) -> None:
        super().__init__()
        self.respond = respond

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def answer(self, request: Received) -> Response | None:
        reply = self.respond(request)
        if reply is None:
            return None
        status, body = reply
        return Response.of_sse(status, body) if isinstance(body, str) else Response.of_json(status, body)


def fake_server(respond: Responder) -> FakeServer:
    """`async with fake_server(respond) as server:` serves on 127.0.0.1 for the block."""
    return FakeServer(respond)


def error(status: int, message: str) -> Responder:
    return lambda request: (status, {"error": {"message": message, "type": "test_error", "code": None}})


def completion_body(content: str = "Hello.", tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "fake-model",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }


def sse(*events: dict[str, Any]) -> str:
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body: dict[str, Any] = {
        "id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "fake-model", "choices": choices
    }  # fmt: skip
    if usage:
        body["usage"] = usage
    return body


@pytest.mark.parametrize(
    ("status", "expected", "retryable", "sdk_error", "words"),
    [
        (429, RateLimited, True, openai.RateLimitError, "rate-limiting"),
        (500, ServerError, True, openai.InternalServerError, "failed"),
        (503, ServerError, True, openai.InternalServerError, "failed"),
        (401, AuthError, False, openai.AuthenticationError, "OPENAI_API_KEY"),
        (403, AuthError, False, openai.PermissionDeniedError, "may not use this model"),
        (400, BadRequest, False, openai.BadRequestError, "rejected the request"),
        (422, BadRequest, False, openai.UnprocessableEntityError, "rejected the request"),
    ],
)
async def test_http_errors_are_classified(
    status: int,
    expected: type[ProviderError],
    retryable: bool,
    sdk_error: type[Exception],
    words: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    async with fake_server(error(status, "the server's own words")) as server:
        provider = OpenAICompatibleProvider("fake-model", base_url=server.base_url)
        try:
            with pytest.raises(expected) as info:
                await provider.complete(ask("Hi!"))
            with pytest.raises(expected):
                [c async for c in provider.stream(ask("Hi!"))]
        finally:
            await provider.aclose()
    assert type(info.value) is expected
    assert info.value.retryable is retryable
    assert info.value.status == status
    assert isinstance(info.value.__cause__, sdk_error)
    message = str(info.value)
    assert message.startswith("openai: ")
    assert server.base_url in message and words in message and "the server's own words" in message
    assert len(server.requests) == 2  # the SDK's own retries are off


KEY = "sk-test-Zq8r3JmX0aLp5VwE2nC7"


def echo_the_key(request: Received) -> Reply:
    """A 401 whose body repeats what it was sent, as some servers and gateways do."""
    sent = request.headers.get("authorization", "")
    key = sent.removeprefix("Bearer ")
    return 401, {
        "error": {
            "message": f"Incorrect API key provided: {key}. Header: '{sent}'. Key starts {key[:14]}...",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }


async def test_a_key_echoed_in_an_error_body_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    import traceback

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    async with fake_server(echo_the_key) as server:
        provider = OpenAICompatibleProvider("fake-model", base_url=server.base_url, api_key=KEY)
        try:
            with pytest.raises(AuthError) as info:
                await provider.complete(ask("Hi!"))
            with pytest.raises(AuthError) as streamed:
                [c async for c in provider.stream(ask("Hi!"))]
        finally:
            await provider.aclose()
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"  # the key was really sent
    for error in (info.value, streamed.value):
        shown = "".join(traceback.format_exception(error))  # what a log of the error prints
        assert "Incorrect API key provided: ***" in shown
        assert KEY not in shown and KEY[:14] not in shown
        assert error.__cause__ is None  # the SDK's exception repeats the body: not chained


@pytest.mark.parametrize(
    ("how", "source"),
    [
        ("environment", "The key came from the environment variable OPENAI_API_KEY"),
        ("argument", "The key came from the api_key passed to OpenAICompatibleProvider"),
        ("config", "The key came from models.chat.api_key in app.yaml"),
        ("none", "No API key was sent (none is configured): set OPENAI_API_KEY"),
    ],
)
async def test_a_rejected_key_names_where_it_came_from(how: str, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    async with fake_server(echo_the_key) as server:
        if how == "environment":
            monkeypatch.setenv("OPENAI_API_KEY", KEY)
            provider: Any = resolve_model(f"openai-compatible:fake-model@{server.base_url}", resilient=False)
        elif how == "argument":
            provider = OpenAICompatibleProvider("fake-model", base_url=server.base_url, api_key=KEY)
        elif how == "config":
            provider = OpenAICompatibleProvider(
                "fake-model", base_url=server.base_url, api_key=KEY, api_key_source="models.chat.api_key in app.yaml"
            )
        else:
            provider = resolve_model(f"openai-compatible:fake-model@{server.base_url}", resilient=False)
        try:
            with pytest.raises(AuthError) as info:
                await provider.complete(ask("Hi!"))
        finally:
            await provider.aclose()
    message = str(info.value)
    assert source in message and KEY not in message
    if how == "environment":
        assert "api_key passed" not in message


async def test_an_auth_error_names_the_api_key_given_to_the_provider() -> None:
    async with fake_server(error(401, "Incorrect API key provided")) as server:
        provider = OpenAICompatibleProvider("fake-model", base_url=server.base_url, api_key="sk-wrong")
        try:
            with pytest.raises(AuthError, match="api_key passed to OpenAICompatibleProvider"):
                await provider.complete(ask("Hi!"))
        finally:
            await provider.aclose()
    assert server.requests[0].headers["authorization"] == "Bearer sk-wrong"


async def test_rate_limits_are_retried_by_the_resilient_wrapper() -> None:
    replies = iter([(429, {"error": {"message": "slow down"}}), (200, completion_body("Finally."))])
    async with fake_server(lambda request: next(replies)) as server:
        inner = OpenAICompatibleProvider("fake-model", base_url=server.base_url)
        policy = RetryPolicy(attempts=3, initial=0.01, jitter=0.0)
        provider = ResilientProvider(inner, timeout=10, retry=policy)
        try:
            completion = await provider.complete(ask("Hi!"))
        finally:
            await provider.aclose()
    assert completion.message.content == "Finally."
    assert len(server.requests) == 2


async def test_the_request_maps_messages_tools_and_options() -> None:
    arguments = {"city": "Paris"}
    function = {"name": "get_weather", "arguments": '{"city": "Rome"}'}
    reply_call = {"id": "call_9", "type": "function", "function": function}
    async with fake_server(lambda request: (200, completion_body("", [reply_call]))) as server:
        provider = OpenAICompatibleProvider(
            "fake-model", base_url=server.base_url + "/", headers={"X-Team": "brains"}, organization="org-1"
        )
        call = ToolCall("call_1", "get_weather", arguments)
        request = ChatRequest(
            (
                Message.system("Be brief."),
                Message.user("Weather in Paris?"),
                Message.assistant("", (call,)),
                Message.tool(call, "no data", is_error=True),
            ),
            tools=(WEATHER,),
            tool_choice="get_weather",
            response_schema={"title": "Weather report", "type": "object"},
            temperature=0.2,
            max_tokens=12,
            stop=("END",),
            extra={"seed": 7},
        )
        try:
            completion = await provider.complete(request)
        finally:
            await provider.aclose()
    assert completion.message.tool_calls == (ToolCall("call_9", "get_weather", {"city": "Rome"}),)
    assert completion.finish_reason == "tool_calls"
    assert completion.model == "fake-model"
    (received,) = server.requests
    assert received.path == "/v1/chat/completions"
    assert received.headers["x-team"] == "brains"
    assert received.headers["openai-organization"] == "org-1"
    body = received.body
    assert body["model"] == "fake-model"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Error: no data"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": WEATHER.description, "parameters": WEATHER.parameters},
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Weather_report", "schema": {"title": "Weather report", "type": "object"}},
    }
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 12
    assert body["stop"] == ["END"]
    assert body["seed"] == 7
    assert "stream" not in body or body["stream"] is False


async def test_a_tool_choice_that_names_no_tool_is_a_bad_request() -> None:
    provider = OpenAICompatibleProvider("any", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(BadRequest, match="get_time"):
        await provider.complete(ask("Hi!", tools=(WEATHER,), tool_choice="get_time"))


async def test_a_stream_assembles_split_tool_calls_and_reports_usage() -> None:
    stream = sse(
        chunk({"role": "assistant", "content": ""}),
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                               "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Rome"}'}}]}, finish="tool_calls"),
        chunk({}, usage={"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}),
    )  # fmt: skip
    async with fake_server(lambda request: (200, stream)) as server:
        provider = OpenAICompatibleProvider("fake-model", base_url=server.base_url)
        try:
            chunks = [c async for c in provider.stream(ask("Weather?", tools=(WEATHER,)))]
        finally:
            await provider.aclose()
    assert server.requests[0].body["stream"] is True
    assert server.requests[0].body["stream_options"] == {"include_usage": True}
    finished = chunks[-1]
    assert isinstance(finished, Finished)
    assert finished.completion.message.tool_calls == (
        ToolCall("call_a", "get_weather", {"city": "Rome"}),
        ToolCall("call_b", "get_weather", {"city": "Oslo"}),
    )
    assert finished.completion.usage == Usage(11, 5)
    assert finished.completion.finish_reason == "tool_calls"
    rebuilt = await collect(_without_finished(chunks))
    assert rebuilt.message.tool_calls == finished.completion.message.tool_calls


async def _without_finished(chunks: list[Any]) -> AsyncIterator[Any]:
    for c in chunks:
        if not isinstance(c, Finished):
            yield c


async def test_a_server_that_rejects_stream_options_still_streams() -> None:
    def respond(request: Received) -> Reply:
        if "stream_options" in request.body:
            return 400, {"error": {"message": "Unrecognized request argument supplied: stream_options"}}
        return 200, sse(chunk({"content": "Hel"}), chunk({"content": "lo"}, finish="stop"))

    async with fake_server(respond) as server:
        provider = OpenAICompatibleProvider("fake-model", base_url=server.base_url)
        try:
            first = [c async for c in provider.stream(ask("Hi!"))]
            second = [c async for c in provider.stream(ask("Hi!"))]
        finally:
            await provider.aclose()
    for chunks in (first, second):
        assert [c.text for c in chunks if isinstance(c, TextDelta)] == ["Hel", "lo"]
        assert chunks[-1].completion.message.content == "Hello"
    assert len(server.requests) == 3  # the server's refusal is remembered


async def test_a_server_without_json_schema_gets_json_object_with_the_schema() -> None:
    def respond(request: Received) -> Reply:
        if request.body["response_format"]["type"] == "json_schema":
            return 500, {"error": {"message": "response_format.type: Input should be 'text' or 'json_object'"}}
        return 200, completion_body('{"value": 4}')

    schema = Sum.model_json_schema()
    async with fake_server(respond) as server:
        provider = OpenAICompatibleProvider("fake-model", base_url=server.base_url)
        try:
            for _ in range(2):
                completion = await provider.complete(ask("2+2?", response_schema=schema))
                assert completion.message.content == '{"value": 4}'
        finally:
            await provider.aclose()
    assert [r.body["response_format"] for r in server.requests] == [
        {"type": "json_schema", "json_schema": {"name": "Sum", "schema": schema}},
        {"type": "json_object", "schema": schema},
        {"type": "json_object", "schema": schema},
    ]


async def test_an_error_inside_a_stream_is_a_server_error() -> None:
    stream = sse(chunk({"content": "Hel"}), {"error": {"message": "the model crashed", "type": "server_error"}})
    async with fake_server(lambda request: (200, stream)) as server:
        provider = OpenAICompatibleProvider("fake-model", base_url=server.base_url)
        try:
            received: list[Any] = []
            with pytest.raises(ServerError, match="the model crashed") as info:
                async for c in provider.stream(ask("Hi!")):
                    received.append(c)
        finally:
            await provider.aclose()
    assert received == [TextDelta("Hel")]
    assert isinstance(info.value.__cause__, openai.APIError)


async def test_cancelling_the_caller_cancels_the_http_request() -> None:
    async with fake_server(lambda request: None) as server:
        provider = OpenAICompatibleProvider("fake-model", base_url=server.base_url)
        try:
            task = asyncio.create_task(provider.complete(ask("Hi!")))
            await asyncio.wait_for(server.waiting.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(server.disconnected.wait(), 5)

            server.waiting.clear()
            server.disconnected.clear()
            consumer = asyncio.create_task(first_chunk(provider.stream(ask("Hi!"))))
            await asyncio.wait_for(server.waiting.wait(), 10)
            consumer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await consumer
            await asyncio.wait_for(server.disconnected.wait(), 5)
        finally:
            await provider.aclose()


async def first_chunk(chunks: AsyncIterator[Any]) -> Any:
    return await anext(chunks)


# -- configuration ---------------------------------------------------------------------------------
async def test_openai_without_a_key_is_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelNotConfigured, match="OPENAI_API_KEY"):
        resolve_model("openai:gpt-4o-mini")
    provider = OpenAICompatibleProvider("gpt-4o-mini")
    with pytest.raises(ModelNotConfigured, match="OPENAI_API_KEY"):
        await provider.complete(ask("Hi!"))


async def test_openai_itself_gets_max_completion_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    provider = OpenAICompatibleProvider("gpt-4o-mini", api_key="sk-test")
    params = provider._params(ask("Hi!", max_tokens=10))
    assert params["max_completion_tokens"] == 10 and "max_tokens" not in params
    assert provider.label == "openai:gpt-4o-mini"
