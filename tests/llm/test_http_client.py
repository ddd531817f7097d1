"""Providers take the caller's httpx2 client (the SDKs' httpx), so tests can answer with `MockTransport`
(no server, no socket) and the caller keeps ownership of the client."""

from __future__ import annotations

import json

import httpx2 as httpx  # the SDKs' fork of httpx, with the same MockTransport

from nanobrain.llm import ChatRequest, Message
from nanobrain.llm.anthropic_provider import AnthropicProvider
from nanobrain.llm.openai_compat import OpenAICompatibleProvider

ASK = ChatRequest(messages=[Message(role="user", content="hi")])


async def test_the_openai_compatible_provider_sends_through_the_given_client() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hello"}}
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            },
        )

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    provider = OpenAICompatibleProvider("m", base_url="http://127.0.0.1:9/v1", http_client=client)
    completion = await provider.complete(ASK)
    assert completion.message.content == "hello"
    assert [str(r.url) for r in seen] == ["http://127.0.0.1:9/v1/chat/completions"]
    assert json.loads(seen[0].content)["messages"] == [{"role": "user", "content": "hi"}]
    await provider.aclose()
    assert not client.is_closed  # the caller's client stays open
    assert (await provider.complete(ASK)).message.content == "hello"  # and is used again
    await client.aclose()


async def test_the_anthropic_provider_sends_through_the_given_client() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-x",
                "content": [{"type": "text", "text": "hello"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 3, "output_tokens": 1},
            },
        )

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    provider = AnthropicProvider("claude-x", api_key="k", base_url="http://127.0.0.1:9", http_client=client)
    assert (await provider.complete(ASK)).message.content == "hello"
    assert [r.url.path for r in seen] == ["/v1/messages"]
    await provider.aclose()
    assert not client.is_closed
    await client.aclose()
