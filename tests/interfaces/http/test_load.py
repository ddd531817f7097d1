"""Many concurrent streaming clients, and clients that go away: nothing is lost, nothing leaks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.interfaces.http.conftest import LiveServer, headers, start_server

from nanobrain.llm import ChatRequest, ScriptedModel

CLIENTS = 24
WORDS = 40


def answer_for(text: str) -> str:
    return f"{text}:" + "".join(f" w{i}" for i in range(WORDS))


def respond(request: ChatRequest) -> str:
    return answer_for(request.messages[-1].content)


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[LiveServer]:
    live = start_server(tmp_path, ScriptedModel(respond=respond, chunk_size=3, delay=0.002))
    yield live
    live.close()


def settle(server: LiveServer, level: int, timeout: float = 10.0) -> int:
    """The server's task count once it is back at `level` (or what it is after `timeout`)."""
    deadline = time.monotonic() + timeout
    while (count := server.task_count()) > level and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


async def stream_chat(client: httpx.AsyncClient, text: str) -> str:
    body = {"model": "chat", "messages": [{"role": "user", "content": text}], "stream": True}
    pieces = []
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if chunk["choices"]:
                    pieces.append(chunk["choices"][0]["delta"].get("content") or "")
            elif line == "data: [DONE]":
                pieces.append("<done>")
    return "".join(pieces)


def test_concurrent_streaming_clients_each_get_their_whole_ordered_answer(busy: LiveServer) -> None:
    async def main() -> list[str]:
        async with httpx.AsyncClient(base_url=busy.url, headers=headers(busy, "run"), timeout=60) as client:
            await stream_chat(client, "warm-up")
            return await asyncio.gather(*(stream_chat(client, f"client-{i}") for i in range(CLIENTS)))

    idle = busy.task_count()
    answers = asyncio.run(main())
    assert answers == [answer_for(f"client-{i}") + "<done>" for i in range(CLIENTS)]
    assert settle(busy, idle) <= idle
    assert busy.app.state.nanobrain.turns == set()


def test_a_client_that_disconnects_cancels_its_turn_which_keeps_the_partial_answer(tmp_path: Path) -> None:
    live = start_server(tmp_path, ScriptedModel(respond=respond, chunk_size=1, delay=0.02))
    try:
        idle = live.task_count()
        body = {"model": "chat", "messages": [{"role": "user", "content": "long"}], "stream": True}
        seen = 0
        with httpx.stream(
            "POST", f"{live.url}/v1/chat/completions", json=body, headers={**headers(live, "run"), "X-Session-Id": "d"}
        ) as response:
            for line in response.iter_lines():
                seen += line.startswith("data: ")
                if seen == 5:
                    break  # leave mid-answer
        assert settle(live, idle) <= idle

        async def stored() -> list[Any]:
            return await live.app.state.nanobrain.chat.services.history.messages("d")

        deadline = time.monotonic() + 5
        while len(messages := live.call(stored)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [m.message.role for m in messages] == ["user", "assistant"]
        assert messages[1].metadata["interrupted"] is True
        assert 0 < len(messages[1].message.content) < len(answer_for("long"))
    finally:
        live.close()
