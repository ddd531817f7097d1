"""The provider interface: stream collection, the resilient wrapper, model selection, the scripted model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import nanobrain as nb
from nanobrain.llm import (
    AuthError,
    BadRequest,
    ChatRequest,
    Finished,
    Message,
    ModelNotConfigured,
    Provider,
    RateLimited,
    ResilientProvider,
    ScriptedModel,
    ServerError,
    StreamChunk,
    TextDelta,
    ToolCallDelta,
    call,
    collect,
    resolve_model,
)
from nanobrain.llm.errors import ProviderTimeout

REQUEST = ChatRequest((Message.user("hi"),))
FAST_RETRY = nb.RetryPolicy(attempts=3, initial=0, jitter=0)


async def test_collect_assembles_text_and_tool_call_deltas() -> None:
    async def chunks() -> AsyncIterator[StreamChunk]:
        yield TextDelta("Hel")
        yield TextDelta("lo")
        yield ToolCallDelta(0, "c1", "add", '{"a": ')
        yield ToolCallDelta(0, None, None, "1}")
        yield ToolCallDelta(1, "c2", "neg", "")

    completion = await collect(chunks())
    assert completion.message.content == "Hello"
    assert [(c.id, c.name, c.arguments) for c in completion.message.tool_calls] == [
        ("c1", "add", {"a": 1}),
        ("c2", "neg", {}),
    ]


async def test_scripted_stream_matches_complete_and_records_requests() -> None:
    model = ScriptedModel(["one two three four", call("add", a=1)], chunk_size=5)
    chunks = [c async for c in model.stream(REQUEST)]
    assert [c.text for c in chunks if isinstance(c, TextDelta)] == ["one t", "wo th", "ree f", "our"]
    assert isinstance(chunks[-1], Finished) and chunks[-1].completion.message.content == "one two three four"
    completion = await model.complete(REQUEST)
    assert completion.message.tool_calls[0].arguments == {"a": 1}
    assert completion.finish_reason == "tool_calls"
    assert model.requests == [REQUEST, REQUEST]


class Flaky(Provider):
    provider = "flaky"

    def __init__(self, errors: list[BaseException], hang: float = 0.0) -> None:
        super().__init__("flaky")
        self.errors = errors
        self.calls = 0
        self.hang = hang

    async def complete(self, request: ChatRequest):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.hang:
            await asyncio.sleep(self.hang)
        if self.errors:
            raise self.errors.pop(0)
        return await ScriptedModel(["fine"]).complete(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:  # type: ignore[override]
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        yield TextDelta("fi")
        yield TextDelta("ne")


async def test_retryable_errors_are_retried_others_are_not() -> None:
    flaky = Flaky([RateLimited("slow down"), ServerError("oops")])
    assert (await ResilientProvider(flaky, retry=FAST_RETRY).complete(REQUEST)).message.content == "fine"
    assert flaky.calls == 3

    denied = Flaky([AuthError("bad key")])
    with pytest.raises(AuthError):
        await ResilientProvider(denied, retry=FAST_RETRY).complete(REQUEST)
    assert denied.calls == 1


async def test_timeout_cancels_the_call_and_is_retried_then_reported() -> None:
    hanging = Flaky([], hang=10)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ProviderTimeout, match=r"no answer within 0\.05s"):
        await ResilientProvider(hanging, timeout=0.05, retry=FAST_RETRY).complete(REQUEST)
    assert hanging.calls == 3
    assert asyncio.get_running_loop().time() - started < 5


async def test_stream_is_retried_only_before_the_first_chunk() -> None:
    flaky = Flaky([ServerError("down")])
    chunks = [c async for c in ResilientProvider(flaky, retry=FAST_RETRY).stream(REQUEST)]
    assert [c.text for c in chunks if isinstance(c, TextDelta)] == ["fi", "ne"]
    assert flaky.calls == 2


class RecordingClock(nb.VirtualClock):
    """A virtual clock that keeps the seconds of every sleep."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await super().sleep(seconds)


class TimedFlaky(Flaky):
    """Flaky, noting the clock's time of each call."""

    def __init__(self, errors: list[BaseException], clock: nb.VirtualClock) -> None:
        super().__init__(errors)
        self.clock = clock
        self.times: list[float] = []

    async def complete(self, request: ChatRequest):  # type: ignore[no-untyped-def]
        self.times.append(self.clock.now())
        return await super().complete(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:  # type: ignore[override]
        self.times.append(self.clock.now())
        async for chunk in super().stream(request):
            yield chunk


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_complete_and_stream_wait_as_the_retry_policy_says_on_the_given_clock(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = RecordingClock()
    flaky = TimedFlaky([ServerError("a"), RateLimited("b"), ServerError("c")], clock)
    policy = nb.RetryPolicy(attempts=4, initial=1.0, multiplier=2.0, max_wait=3.0, jitter=0.5)
    monkeypatch.setattr(policy._random, "random", lambda: 0.5)  # jitter: half of it
    provider = ResilientProvider(flaky, retry=policy, clock=clock)

    async def answer() -> str:
        if mode == "complete":
            return (await provider.complete(REQUEST)).message.content
        return "".join([c.text async for c in provider.stream(REQUEST) if isinstance(c, TextDelta)])

    task = asyncio.create_task(answer())
    while not task.done():
        assert clock.now() < 100, "still retrying after 100 virtual seconds"
        await clock.advance(0.25)
    assert task.result() == "fine"
    # initial * multiplier**(n-1), capped at max_wait, plus the jitter.
    assert clock.waits == [1.25, 2.25, 3.25]
    assert flaky.times == pytest.approx([0.0, 1.25, 3.5, 6.75])


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_complete_and_stream_retry_only_retryable_errors(mode: str) -> None:
    clock = RecordingClock()
    flaky = Flaky([BadRequest("too long")])  # trying again cannot help
    provider = ResilientProvider(flaky, retry=nb.RetryPolicy(attempts=3, retry_on=(ServerError,)), clock=clock)
    with pytest.raises(BadRequest):
        if mode == "complete":
            await provider.complete(REQUEST)
        else:
            [c async for c in provider.stream(REQUEST)]
    assert flaky.calls == 1 and clock.waits == []


@pytest.mark.parametrize(
    ("spec", "env", "message"),
    [
        ("openai:gpt-4o-mini", {}, "OPENAI_API_KEY"),
        ("anthropic:claude-x", {}, "ANTHROPIC_API_KEY"),
        ("openai-compatible:model-without-url", {}, "openai-compatible:MODEL@http"),
        ("gpt5", {}, "unknown model 'gpt5'"),
        ("local:/nonexistent/model.gguf", {}, "/nonexistent/model.gguf"),
        ("openai:", {"OPENAI_API_KEY": "k"}, "needs a model name"),
    ],
)
def test_model_strings_fail_with_instructions(
    spec: str, env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ModelNotConfigured) as caught:
        resolve_model(spec)
    assert message in str(caught.value)
    assert "NANOBRAIN_MODEL" in str(caught.value) or "local" in str(caught.value)


def test_nanobrain_model_variable_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NANOBRAIN_MODEL", "nonsense-model")
    with pytest.raises(ModelNotConfigured, match="unknown model 'nonsense-model'"):
        resolve_model(None)
