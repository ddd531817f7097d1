"""AnthropicProvider: the real `anthropic` SDK against recorded Messages-API responses.

There is no offline Anthropic, so these tests replay recorded responses locally: a minimal
HTTP/1.1 server on 127.0.0.1 answers `POST /v1/messages` with the files under
`recordings/anthropic/` (JSON bodies for plain calls, `text/event-stream` SSE for streams, in the
public Messages-API format) and records every request it receives, so that the tests also check
what the provider sends: the `system` parameter, `tool_use`/`tool_result` blocks, tools with
`input_schema`, `tool_choice`, `max_tokens`, `stop_sequences` and the headers. All traffic goes
to 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic._constants import ANTHROPIC_API_VERSION
from pydantic import BaseModel
from tests.llm.local_http import EVENT_STREAM, JSON, LocalServer, Received, Response

import nanobrain as nb
from nanobrain.agents.agent import Agent
from nanobrain.core.retry import RetryPolicy
from nanobrain.llm import (
    AuthError,
    BadRequest,
    ChatRequest,
    Completion,
    Finished,
    Message,
    ModelNotConfigured,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    ResilientProvider,
    ServerError,
    StreamChunk,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Unreachable,
    Usage,
    collect,
    resolve_model,
)
from nanobrain.llm.anthropic_provider import FINAL_ANSWER_TOOL, AnthropicProvider

RECORDINGS = Path(__file__).parent / "recordings" / "anthropic"
MODEL = "claude-sonnet-5-5"

WEATHER = ToolSpec(
    "get_weather",
    "Get the current weather in a city.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city's name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
)


class City(BaseModel):
    city: str
    country: str
    population_millions: float


# -- the replay server ------------------------------------------------------------------------------
class ReplayServer(LocalServer):
    """Answers requests with queued recordings, in order (see tests/llm/local_http.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.replies: deque[Response | None] = deque()

    def add(self, *names: str, status: int = 200) -> ReplayServer:
        """Queue recordings by file name: `.json` is sent as JSON, `.sse` as an event stream."""
        for name in names:
            data = (RECORDINGS / name).read_bytes()
            self.replies.append(Response(status, data, EVENT_STREAM if name.endswith(".sse") else JSON))
        return self

    def hang(self) -> ReplayServer:
        """Queue a reply that never comes (the client times out)."""
        self.replies.append(None)
        return self

    def answer(self, request: Received) -> Response | None:
        if self.replies:
            reply = self.replies.popleft()
        else:
            error = {"type": "error", "error": {"type": "api_error", "message": "the replay server has no reply left"}}
            reply = Response.of_json(500, error)
        request_id = f"req_011CVReplay{len(self.requests):011d}"
        return None if reply is None else replace(reply, headers={"request-id": request_id})


@pytest.fixture
async def server() -> AsyncIterator[ReplayServer]:
    async with ReplayServer() as replay:
        yield replay


@pytest.fixture
async def claude(server: ReplayServer) -> AsyncIterator[AnthropicProvider]:
    provider = AnthropicProvider(
        MODEL, api_key="test-key", base_url=server.url, max_tokens=256, timeout=10, headers={"X-Team": "nanobrain"}
    )
    yield provider
    await provider.aclose()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ask(text: str, **options: Any) -> ChatRequest:
    return ChatRequest((Message.system("You are a concise assistant."), Message.user(text)), **options)


async def chunks_of(provider: AnthropicProvider, request: ChatRequest) -> list[StreamChunk]:
    return [chunk async for chunk in provider.stream(request)]


def final(chunks: list[StreamChunk]) -> Completion:
    assert isinstance(chunks[-1], Finished)
    assert sum(isinstance(c, Finished) for c in chunks) == 1
    return chunks[-1].completion


# -- text ---------------------------------------------------------------------------------------------
async def test_a_completion_maps_the_request_and_returns_text_and_usage(
    server: ReplayServer, claude: AnthropicProvider
) -> None:
    server.add("text_completion.json")
    completion = await claude.complete(ask("What is the capital of France?", stop=("\n\nUser:",)))

    assert completion.message == Message.assistant("The capital of France is Paris.")
    assert completion.usage == Usage(prompt_tokens=21, completion_tokens=10)
    assert completion.model == MODEL
    assert completion.finish_reason == "stop"

    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.body == {
        "model": MODEL,
        "max_tokens": 256,  # the constructor's default: the request set none
        "system": "You are a concise assistant.",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "stop_sequences": ["\n\nUser:"],
    }
    # SDK 2.x sends the key as a bearer token (not x-api-key) and pins its API version.
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.headers["anthropic-version"] == ANTHROPIC_API_VERSION
    assert request.headers["x-team"] == "nanobrain"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-stainless-retry-count"] == "0"


async def test_request_max_tokens_wins_and_system_messages_are_joined(
    server: ReplayServer, claude: AnthropicProvider
) -> None:
    server.add("text_completion.json")
    request = ChatRequest(
        (
            Message.system("Be brief."),
            Message.user("Hi"),
            Message.assistant("Hello!"),
            Message.system("Answer in French."),
            Message.user("Capital of France?"),
        ),
        max_tokens=64,
    )
    await claude.complete(request)
    body = server.bodies[0]
    assert body["max_tokens"] == 64
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert "stop_sequences" not in body and "tools" not in body and "tool_choice" not in body


async def test_a_stream_yields_text_deltas_that_add_up_to_the_final_message(
    server: ReplayServer, claude: AnthropicProvider
) -> None:
    server.add("stream_text.sse")
    chunks = await chunks_of(claude, ask("Tell me about cats."))

    deltas = [c.text for c in chunks if isinstance(c, TextDelta)]
    assert deltas == [
        "Cats are",
        " small, carnivorous",
        " mammals that people",
        " have kept as companions for thousands of years.",
    ]
    completion = final(chunks)
    assert completion.message.content == "".join(deltas)
    assert completion.message.tool_calls == ()
    assert completion.usage == Usage(prompt_tokens=18, completion_tokens=19)  # message_start, message_delta
    assert completion.model == MODEL
    assert completion.finish_reason == "stop"
    assert server.bodies[0]["stream"] is True
    assert server.requests[0].headers["accept"] == "application/json"  # the SDK's default; SSE comes back


async def test_collect_and_complete_agree_on_a_streamed_answer(server: ReplayServer, claude: AnthropicProvider) -> None:
    server.add("stream_text.sse")
    completion = await collect(claude.stream(ask("Tell me about cats.")))
    assert completion.message.content.startswith("Cats are small")


# -- tools ----------------------------------------------------------------------------------------------
async def test_a_tool_round_parses_tool_use_and_sends_tool_results_back(
    server: ReplayServer, claude: AnthropicProvider
) -> None:
    server.add("tool_use.json", "tool_result_answer.json")
    question = Message.user("What's the weather in Paris and Lyon?")
    first = await claude.complete(ChatRequest((question,), tools=(WEATHER,)))

    assert first.finish_reason == "tool_calls"
    assert first.message.content == "I'll check the weather in both cities."
    assert first.message.tool_calls == (
        ToolCall("toolu_01A09q90qw90lq917835lq9", "get_weather", {"city": "Paris"}),
        ToolCall("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", {"city": "Lyon", "unit": "celsius"}),
    )
    assert first.usage == Usage(412, 97)
    assert server.bodies[0]["tools"] == [
        {"name": "get_weather", "description": "Get the current weather in a city.", "input_schema": WEATHER.parameters}
    ]
    assert server.bodies[0]["tool_choice"] == {"type": "auto"}

    paris, lyon = first.message.tool_calls
    follow_up = ChatRequest(
        (
            question,
            first.message,
            Message.tool(paris, "18°C, sunny"),
            Message.tool(lyon, "weather service unavailable", is_error=True),
        ),
        tools=(WEATHER,),
    )
    second = await claude.complete(follow_up)
    assert second.message.content.startswith("It is 18°C and sunny in Paris.")
    assert second.message.tool_calls == ()
    assert second.finish_reason == "stop"

    assert server.bodies[1]["messages"] == [
        {"role": "user", "content": "What's the weather in Paris and Lyon?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "I'll check the weather in both cities."},
                {"type": "tool_use", "id": paris.id, "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": lyon.id, "name": "get_weather",
                 "input": {"city": "Lyon", "unit": "celsius"}},
            ],
        },
        {
            # Consecutive tool results share one user turn.
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": paris.id, "content": "18°C, sunny"},
                {"type": "tool_result", "tool_use_id": lyon.id, "content": "weather service unavailable",
                 "is_error": True},
            ],
        },
    ]  # fmt: skip


async def test_a_user_message_after_tool_results_joins_their_turn(
    server: ReplayServer, claude: AnthropicProvider
) -> None:
    server.add("text_completion.json")
    call = ToolCall("toolu_01D7FLrfh4GYq7yT1ULFeyMV", "get_weather", {"city": "Paris"})
    await claude.complete(
        ChatRequest(
            (
                Message.user("Weather?"),
                Message.assistant("", (call,)),
                Message.tool(call, "18°C"),
                Message.user("Thanks!"),
            ),
            tools=(WEATHER,),
        )
    )
    assert server.bodies[0]["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18°C"},
                                     {"type": "text", "text": "Thanks!"}]},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ("get_weather", {"type": "tool", "name": "get_weather"}),
    ],
)
async def test_tool_choice_is_mapped(
    server: ReplayServer, claude: AnthropicProvider, choice: str, expected: dict[str, str]
) -> None:
    server.add("tool_use.json")
    await claude.complete(ChatRequest((Message.user("Weather in Paris?"),), tools=(WEATHER,), tool_choice=choice))
    assert server.bodies[0]["tool_choice"] == expected
    assert [t["name"] for t in server.bodies[0]["tools"]] == ["get_weather"]


@pytest.mark.parametrize(
    ("tools", "choice", "match"),
    [
        ((WEATHER,), "search", "tool_choice 'search' is not one of"),
        ((), "required", "needs at least one tool"),
    ],
)
async def test_an_impossible_tool_choice_is_a_bad_request_before_any_traffic(
    server: ReplayServer, claude: AnthropicProvider, tools: tuple[ToolSpec, ...], choice: str, match: str
) -> None:
    with pytest.raises(BadRequest, match=match):
        await claude.complete(ChatRequest((Message.user("Hi"),), tools=tools, tool_choice=choice))
    with pytest.raises(BadRequest, match=match):
        await chunks_of(claude, ChatRequest((Message.user("Hi"),), tools=tools, tool_choice=choice))
    assert server.requests == []


async def test_a_streamed_tool_use_arrives_as_input_json_deltas(
    server: ReplayServer, claude: AnthropicProvider
) -> None:
    server.add("stream_tool_use.sse")
    chunks = await chunks_of(claude, ChatRequest((Message.user("Weather in Paris?"),), tools=(WEATHER,)))

    text = [c.text for c in chunks if isinstance(c, TextDelta)]
    assert "".join(text) == "Let me check the weather in Paris."
    calls = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert calls[0] == ToolCallDelta(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", "")
    assert all(c.index == 0 and c.id is None and c.name is None for c in calls[1:])
    assert "".join(c.arguments for c in calls) == '{"city": "Paris", "unit": "celsius"}'

    completion = final(chunks)
    assert completion.message.tool_calls == (
        ToolCall("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", {"city": "Paris", "unit": "celsius"}),
    )
    assert completion.message.content == "Let me check the weather in Paris."
    assert completion.finish_reason == "tool_calls"
    assert completion.usage == Usage(472, 89)

    # The deltas alone assemble to the same call (what collect() does without Finished).
    async def without_finished() -> AsyncIterator[StreamChunk]:
        for chunk in chunks[:-1]:
            yield chunk

    assembled = await collect(without_finished())
    assert assembled.message.tool_calls == completion.message.tool_calls


# -- structured output --------------------------------------------------------------------------------
async def test_structured_output_goes_through_the_forced_final_answer_tool(
    server: ReplayServer, claude: AnthropicProvider
) -> None:
    server.add("structured_output.json")
    schema = City.model_json_schema()
    completion = await claude.complete(ask("Which city is the capital of France?", response_schema=schema))

    assert completion.message.tool_calls == ()
    assert completion.finish_reason == "stop"
    assert City.model_validate_json(completion.message.content) == City(
        city="Paris", country="France", population_millions=2.1
    )
    body = server.bodies[0]
    assert body["tools"] == [
        {
            "name": FINAL_ANSWER_TOOL,
            "input_schema": schema,
            "description": "Give the final answer. The input of this tool is the answer itself and must follow "
            "its schema.",
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "final_answer"}


async def test_a_streamed_structured_answer_streams_its_json_as_text(
    server: ReplayServer, claude: AnthropicProvider
) -> None:
    server.add("stream_structured.sse")
    chunks = await chunks_of(claude, ask("Capital of France?", response_schema=City.model_json_schema()))
    assert not any(isinstance(c, ToolCallDelta) for c in chunks)
    completion = final(chunks)
    assert completion.message.content == "".join(c.text for c in chunks if isinstance(c, TextDelta))
    assert City.model_validate_json(completion.message.content).city == "Paris"
    assert completion.message.tool_calls == ()
    assert completion.finish_reason == "stop"
    assert completion.usage == Usage(538, 62)


async def test_a_schema_that_is_not_an_object_is_wrapped_and_unwrapped(
    server: ReplayServer, claude: AnthropicProvider
) -> None:
    server.add("structured_list.json")
    schema = {"type": "array", "items": {"type": "string"}}
    completion = await claude.complete(ask("Three colors?", response_schema=schema))
    assert json.loads(completion.message.content) == ["red", "green", "blue"]
    assert completion.usage == Usage(402 + 128, 41)  # cache reads count as prompt tokens
    assert server.bodies[0]["tools"][0]["input_schema"] == {
        "type": "object",
        "properties": {"value": schema},
        "required": ["value"],
    }


async def test_structured_output_with_tools_lets_the_model_pick_a_tool_or_answer(
    server: ReplayServer, claude: AnthropicProvider
) -> None:
    server.add("tool_use.json")
    completion = await claude.complete(
        ask("Weather in Paris?", tools=(WEATHER,), response_schema=City.model_json_schema())
    )
    assert [c.name for c in completion.message.tool_calls] == ["get_weather", "get_weather"]
    body = server.bodies[0]
    assert [t["name"] for t in body["tools"]] == ["get_weather", "final_answer"]
    assert body["tool_choice"] == {"type": "any"}


async def test_a_user_tool_named_final_answer_clashes_with_structured_output(claude: AnthropicProvider) -> None:
    clash = ToolSpec(FINAL_ANSWER_TOOL, "", {"type": "object", "properties": {}})
    with pytest.raises(BadRequest, match="rename the tool"):
        await claude.complete(ask("Hi", tools=(clash,), response_schema={"type": "object"}))


# -- sampling -------------------------------------------------------------------------------------------
async def test_temperature_is_refused_by_the_current_api_version(
    server: ReplayServer, claude: AnthropicProvider
) -> None:
    with pytest.raises(BadRequest, match="has no temperature"):
        await claude.complete(ask("Hi", temperature=0.2))
    assert server.requests == []


async def test_temperature_is_sent_when_an_older_api_version_is_pinned(server: ReplayServer) -> None:
    server.add("text_completion.json")
    provider = AnthropicProvider(
        MODEL, api_key="test-key", base_url=server.url, headers={"anthropic-version": "2023-06-01"}
    )
    try:
        await provider.complete(ask("Hi", temperature=0.2, extra={"metadata": {"user_id": "u-42"}}))
    finally:
        await provider.aclose()
    assert server.requests[0].headers["anthropic-version"] == "2023-06-01"
    assert server.bodies[0]["temperature"] == 0.2
    assert server.bodies[0]["metadata"] == {"user_id": "u-42"}
    assert server.bodies[0]["max_tokens"] == 1024


# -- errors ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "error", "sdk_error", "words"),
    [
        (429, RateLimited, anthropic.RateLimitError, "rate-limiting"),
        (401, AuthError, anthropic.AuthenticationError, "ANTHROPIC_API_KEY"),
        (403, AuthError, anthropic.PermissionDeniedError, "ANTHROPIC_API_KEY"),
        (400, BadRequest, anthropic.BadRequestError, "Input should be a valid list"),
        (404, BadRequest, anthropic.NotFoundError, "claude-sonnet-5-5"),
        (500, ServerError, anthropic.InternalServerError, "Internal server error"),
        (529, ServerError, anthropic.OverloadedError, "overloaded"),
    ],
)
async def test_http_errors_are_classified(
    server: ReplayServer,
    claude: AnthropicProvider,
    status: int,
    error: type[ProviderError],
    sdk_error: type[Exception],
    words: str,
) -> None:
    server.add(f"error_{status}.json", f"error_{status}.json", status=status)
    with pytest.raises(error, match=words) as info:
        await claude.complete(ask("Hi"))
    assert info.value.status == status
    assert info.value.provider == "anthropic"
    assert info.value.retryable == (status in (429, 500, 529))
    assert isinstance(info.value.__cause__, sdk_error)

    with pytest.raises(error) as streamed:
        await chunks_of(claude, ask("Hi"))
    assert isinstance(streamed.value.__cause__, sdk_error)
    assert len(server.requests) == 2  # the SDK never retries on its own


async def test_an_error_event_inside_a_stream_is_classified_by_its_type(
    server: ReplayServer, claude: AnthropicProvider
) -> None:
    server.add("stream_overloaded.sse")
    received: list[StreamChunk] = []
    with pytest.raises(ServerError, match="overloaded_error: Overloaded") as info:
        async for chunk in claude.stream(ask("Tell me about cats.")):
            received.append(chunk)
    assert received == [TextDelta("Cats are")]
    assert isinstance(info.value.__cause__, anthropic.APIStatusError)


class KeyEchoServer(LocalServer):
    """Rejects every request with a 401 whose message repeats the key it was sent."""

    def answer(self, request: Received) -> Response | None:
        key = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        error = {"type": "authentication_error", "message": f"invalid x-api-key: {key} (starts {key[:12]}...)"}
        return Response.of_json(401, {"type": "error", "error": error})


async def test_a_key_echoed_in_an_error_body_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    import traceback

    key = "sk-ant-api03-Zq8r3JmX0aLp5VwE2nC7"
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    async with KeyEchoServer() as echo:
        provider = AnthropicProvider(MODEL, api_key=key, base_url=echo.url, timeout=5)
        try:
            with pytest.raises(AuthError) as info:
                await provider.complete(ask("Hi"))
            with pytest.raises(AuthError) as streamed:
                await chunks_of(provider, ask("Hi"))
        finally:
            await provider.aclose()
    sent = echo.requests[0].headers
    assert key in (sent.get("x-api-key"), sent.get("authorization", "").removeprefix("Bearer "))
    for error in (info.value, streamed.value):
        shown = "".join(traceback.format_exception(error))
        assert "invalid x-api-key: ***" in shown and "api_key passed to AnthropicProvider" in shown
        assert key not in shown and key[:12] not in shown
        assert error.__cause__ is None


async def test_a_closed_port_is_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    provider = AnthropicProvider(MODEL, api_key="test-key", base_url=url, timeout=5)
    try:
        with pytest.raises(Unreachable, match="cannot reach") as info:
            await provider.complete(ask("Hi"))
        assert url in str(info.value)
        assert info.value.retryable
        assert isinstance(info.value.__cause__, anthropic.APIConnectionError)
        with pytest.raises(Unreachable):
            await chunks_of(provider, ask("Hi"))
    finally:
        await provider.aclose()


async def test_a_silent_server_is_a_timeout(server: ReplayServer) -> None:
    server.hang()
    provider = AnthropicProvider(MODEL, api_key="test-key", base_url=server.url, timeout=0.3)
    try:
        with pytest.raises(ProviderTimeout, match=r"0\.3s") as info:
            await provider.complete(ask("Hi"))
    finally:
        await provider.aclose()
    assert info.value.retryable
    assert isinstance(info.value.__cause__, anthropic.APITimeoutError)


async def test_resilient_provider_retries_an_overloaded_api(server: ReplayServer, claude: AnthropicProvider) -> None:
    server.add("error_529.json", status=529).add("text_completion.json")
    resilient = ResilientProvider(claude, retry=RetryPolicy(attempts=3, initial=0.01, max_wait=0.05, jitter=0))
    completion = await resilient.complete(ask("What is the capital of France?"))
    assert completion.message.content == "The capital of France is Paris."
    assert len(server.requests) == 2
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "0"]


# -- configuration ---------------------------------------------------------------------------------------
def _without_anthropic_credentials(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    for name in (
        "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE", "ANTHROPIC_CONFIG_DIR",
        "ANTHROPIC_BASE_URL", "ANTHROPIC_IDENTITY_TOKEN", "ANTHROPIC_IDENTITY_TOKEN_FILE",
        "ANTHROPIC_FEDERATION_RULE_ID", "ANTHROPIC_ORGANIZATION_ID",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))  # no credentials profile under ~/.config/anthropic


def test_resolve_model_without_a_key_says_how_to_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ModelNotConfigured, match="ANTHROPIC_API_KEY"):
        resolve_model("anthropic:claude-x")
    with pytest.raises(ModelNotConfigured, match="needs a model name"):
        resolve_model("anthropic:")


def test_resolve_model_with_a_key_builds_a_resilient_anthropic_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    provider = resolve_model("anthropic:claude-x")
    assert isinstance(provider, ResilientProvider)
    assert isinstance(provider.inner, AnthropicProvider)
    assert provider.label == "anthropic:claude-x"


async def test_a_provider_without_any_key_fails_before_sending(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _without_anthropic_credentials(monkeypatch, tmp_path)
    provider = AnthropicProvider(MODEL)
    with pytest.raises(ModelNotConfigured, match="ANTHROPIC_API_KEY"):
        await provider.complete(ask("Hi"))


async def test_a_key_from_the_environment_is_used(
    server: ReplayServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _without_anthropic_credentials(monkeypatch, tmp_path)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    server.add("text_completion.json")
    provider = AnthropicProvider(MODEL, base_url=server.url)
    try:
        await provider.complete(ask("Hi"))
    finally:
        await provider.aclose()
    assert server.requests[0].headers["authorization"] == "Bearer env-key"


async def test_aclose_closes_the_client_and_a_later_call_opens_a_new_one(
    server: ReplayServer, claude: AnthropicProvider
) -> None:
    server.add("text_completion.json", "text_completion.json")
    await claude.complete(ask("Hi"))
    client = claude._client
    assert client is not None
    await claude.aclose()
    assert client.is_closed()
    await claude.complete(ask("Hi"))
    assert claude._client is not client


def test_the_provider_describes_itself() -> None:
    provider = AnthropicProvider(MODEL, api_key="k")
    assert provider.provider == "anthropic"
    assert provider.label == f"anthropic:{MODEL}"
    assert provider._client is None  # created on first use
    with pytest.raises(ValueError, match="max_tokens"):
        AnthropicProvider(MODEL, max_tokens=0)


# -- an agent -------------------------------------------------------------------------------------------------
def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
        city: The city's name.
    """
    return f"18°C and sunny in {city}"


async def test_an_agent_runs_a_full_tool_loop(server: ReplayServer) -> None:
    server.add("agent_tool_use.json", "agent_answer.json")
    model = AnthropicProvider(MODEL, base_url=server.url, api_key="test-key")
    agent = Agent("weather", model=model, system="You answer weather questions.", tools=[get_weather])
    try:
        reply = await agent.ask(message="What's the weather in Paris?")
    finally:
        await model.aclose()
    assert reply == "It is 18°C and sunny in Paris right now."

    first, second = server.bodies
    assert first["system"] == "You answer weather questions."
    [tool] = first["tools"]
    assert tool["name"] == "get_weather"
    assert tool["description"].startswith("Get the current weather in a city.")
    assert tool["input_schema"]["type"] == "object"
    assert tool["input_schema"]["required"] == ["city"]
    assert first["tool_choice"] == {"type": "auto"}
    assert second["messages"] == [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01D7FLrfh4GYq7yT1ULFeyMV",
                                           "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01D7FLrfh4GYq7yT1ULFeyMV",
                                      "content": "18°C and sunny in Paris"}]},
    ]  # fmt: skip


async def test_an_agent_in_a_workflow_streams_tokens_through_a_tool_loop(server: ReplayServer) -> None:
    server.add("stream_agent_tool_use.sse", "stream_agent_answer.sse")
    model = AnthropicProvider(MODEL, base_url=server.url, api_key="test-key")
    agent = Agent("weather", model=model, tools=[get_weather])
    workflow = nb.Workflow.sequence(agent, name="chat")
    try:
        events = [event async for event in workflow.stream(message="What's the weather in Paris?")]
    finally:
        await model.aclose()
    tokens = [e.text for e in events if isinstance(e, nb.Token)]
    assert tokens == ["It is 18°C", " and sunny in Paris", " right now."]
    finished = events[-1]
    assert isinstance(finished, nb.RunFinished)
    assert finished.outputs["reply"] == "".join(tokens)
    assert finished.usage["prompt_tokens"] == 389 + 462
    assert finished.usage["completion_tokens"] == 54 + 16
    assert server.bodies[1]["messages"][2]["content"][0]["content"] == "18°C and sunny in Paris"


async def test_an_agent_with_an_output_type_gets_a_validated_model(server: ReplayServer) -> None:
    server.add("structured_output.json")
    model = AnthropicProvider(MODEL, base_url=server.url, api_key="test-key")
    agent = Agent("facts", model=model, output_type=City)
    try:
        city = await agent.ask(message="Which city is the capital of France?")
    finally:
        await model.aclose()
    assert city == City(city="Paris", country="France", population_millions=2.1)
    body = server.bodies[0]
    assert body["tool_choice"] == {"type": "tool", "name": "final_answer"}
    assert body["tools"][0]["input_schema"] == City.model_json_schema()
    assert "Answer with JSON matching this schema" in body["system"]


async def test_the_health_probe_lists_one_model_and_fails_on_a_bad_key_or_a_dead_endpoint(
    server: ReplayServer, claude: AnthropicProvider
) -> None:
    models = {"data": [{"type": "model", "id": MODEL, "display_name": "Claude", "created_at": "2026-01-01T00:00:00Z"}],
              "has_more": False, "first_id": MODEL, "last_id": MODEL}  # fmt: skip
    server.replies.append(Response.of_json(200, models))
    assert await claude.health_check() is True
    request = server.requests[-1]
    assert (request.method, request.path) == ("GET", "/v1/models?limit=1")
    server.replies.append(Response.of_json(401, {"type": "error", "error": {"type": "authentication_error"}}))
    with pytest.raises(AuthError):
        await claude.health_check()
    # A server that answers, but not this route, is alive: requests may still work.
    server.replies.append(Response.of_json(404, {"type": "error", "error": {"type": "not_found_error"}}))
    assert await claude.health_check() is True
    dead = AnthropicProvider(MODEL, api_key="test-key", base_url=f"http://127.0.0.1:{free_port()}", timeout=5)
    try:
        with pytest.raises(Unreachable, match="cannot reach"):
            await dead.health_check()
    finally:
        await dead.aclose()
