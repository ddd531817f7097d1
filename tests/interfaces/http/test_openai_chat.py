"""The OpenAI-compatible endpoint, with the official openai SDK as the client and the scripted model answering."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from tests.interfaces.http.conftest import LiveServer, headers

from nanobrain.llm.errors import ProviderTimeout, ServerError


def client(server: LiveServer, role: str = "run", **options: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=server.keys[role], max_retries=0, timeout=30, **options  # type: ignore[attr-defined]
    )


def stored(server: LiveServer, session: str) -> list[tuple[str, str, dict[str, Any]]]:
    chat = server.app.state.nanobrain.chat

    async def read() -> list[Any]:
        return await chat.services.history.messages(session, limit=100)

    return [(m.message.role, m.message.content, m.metadata) for m in server.call(read)]


def test_models_lists_the_chat_workflow(server: LiveServer) -> None:
    models = client(server, "read").models.list()
    assert [m.id for m in models.data] == ["chat"]
    assert client(server, "read").models.retrieve("chat").id == "chat"
    with pytest.raises(openai.NotFoundError):
        client(server, "read").models.retrieve("gpt-9")


def test_a_plain_completion_answers_with_usage_and_persists_the_turn(server: LiveServer, model: Any) -> None:
    model.add("Paris is the capital of France.")
    raw = client(server).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "Capital of France?"}]
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Paris is the capital of France."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 6 and completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    session = raw.headers["x-session-id"]
    assert [(r, c) for r, c, _ in stored(server, session)] == [
        ("user", "Capital of France?"),
        ("assistant", "Paris is the capital of France."),
    ]


def test_a_streamed_completion_arrives_in_openai_chunks_in_order_with_usage(server: LiveServer, model: Any) -> None:
    answer = "One, two, three, four, five."
    model.add(answer)
    stream = client(server).chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "Count to five"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 5  # really streamed
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


def test_a_session_header_continues_the_stored_conversation(server: LiveServer, model: Any) -> None:
    model.add("Nice to meet you, Ada.", "You are Ada.")
    sdk = client(server)
    first = sdk.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "I am Ada"}]
    )
    session = first.headers["x-session-id"]
    second = sdk.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "Who am I?"}],
        extra_headers={"X-Session-Id": session},
    )
    assert second.choices[0].message.content == "You are Ada."
    sent = [(m.role, m.content) for m in model.requests[1].messages if m.role != "system"]
    assert sent == [("user", "I am Ada"), ("assistant", "Nice to meet you, Ada."), ("user", "Who am I?")]
    assert len(stored(server, session)) == 4


def test_without_a_session_the_requests_earlier_messages_are_the_history(server: LiveServer, model: Any) -> None:
    model.add("Your name is Bob.")
    sdk = client(server)
    sdk.chat.completions.create(
        model="chat",
        messages=[
            {"role": "user", "content": "My name is Bob"},
            {"role": "assistant", "content": "Hello Bob"},
            {"role": "user", "content": "What is my name?"},
        ],
    )
    sent = [(m.role, m.content) for m in model.requests[0].messages if m.role != "system"]
    assert sent == [("user", "My name is Bob"), ("assistant", "Hello Bob"), ("user", "What is my name?")]


def test_a_session_field_in_the_body_works_too(server: LiveServer, model: Any) -> None:
    model.add("first", "second")
    sdk = client(server)
    for text in ("a", "b"):
        sdk.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": text}], extra_body={"session_id": "s-1"}
        )
    assert [c for _, c, _ in stored(server, "s-1")] == ["a", "first", "b", "second"]


def test_an_unknown_model_is_a_404_naming_the_field(server: LiveServer) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(server).chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    body = caught.value.response.json()
    assert caught.value.response.headers["content-type"].startswith("application/problem+json")
    assert body["errors"][0]["field"] == "model" and "gpt-9" in body["detail"]
    assert body["error"]["param"] == "model"  # OpenAI's error object, for OpenAI clients


def test_a_refused_message_is_a_422_not_a_200_with_an_error(server: LiveServer, model: Any) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client(server).chat.completions.create(model="chat", messages=[{"role": "user", "content": "   "}])
    body = caught.value.response.json()
    assert body["errors"][0]["field"] == "messages.0.content"
    assert "empty" in body["detail"]
    assert model.requests == []


def test_the_last_message_must_be_the_users(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        headers=headers(server, "run"),
        json={"model": "chat", "messages": [{"role": "assistant", "content": "hi"}]},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "messages.0.role"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ServerError("HTTP 500: overloaded (key sk-abcdefghijklmnop)", provider="openai", status=500), 502),
        (ProviderTimeout("no answer within 30s", provider="openai"), 504),
    ],
)
def test_provider_failures_map_to_gateway_statuses_without_secrets(
    server: LiveServer, model: Any, error: Exception, status: int
) -> None:
    model.add(error)
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        headers=headers(server, "run"),
        json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == status
    body = response.json()
    assert body["status"] == status and "openai" in body["detail"]
    assert "abcdefghijklmnop" not in response.text


def test_a_provider_failure_before_the_first_token_of_a_stream_gets_its_status(server: LiveServer, model: Any) -> None:
    model.add(ServerError("HTTP 503: down", provider="openai", status=503))
    with pytest.raises(openai.APIStatusError) as caught:
        list(
            client(server).chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
    assert caught.value.status_code == 502


def test_a_malformed_session_id_is_a_422_naming_where_it_came_from(server: LiveServer, model: Any) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    url = f"{server.url}/v1/chat/completions"
    in_header = httpx.post(url, json=body, headers={**headers(server, "run"), "X-Session-Id": "no spaces allowed"})
    assert in_header.status_code == 422 and in_header.json()["errors"][0]["field"] == "X-Session-Id"
    in_body = httpx.post(url, json={**body, "session_id": "a/b"}, headers=headers(server, "run"))
    assert in_body.status_code == 422 and in_body.json()["errors"][0]["field"] == "body.session_id"
    assert model.requests == []
