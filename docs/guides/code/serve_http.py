"""Serving over HTTP: the chat and a workflow, called with plain HTTP and with the openai SDK.

`nanobrain serve first_workflow.yaml` does this from the command line. Here the same app is
built in Python (`create_app`) and served by uvicorn on 127.0.0.1, so the guide runs in one
process: the model is whatever you pass (the test passes a `ScriptedModel`).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from openai import AsyncOpenAI

from nanobrain.interfaces.http.app import create_app
from nanobrain.workflows.chat.app import ChatApp

from .first_workflow import build


@asynccontextmanager
async def serving(model: Any, folder: Path) -> AsyncIterator[str]:
    """Serve the chat (answering with `model`) and the first workflow; yields the base URL."""
    chat = await ChatApp.open(model=model, database_url=f"sqlite+aiosqlite:///{folder / 'server.db'}")
    app = create_app(workflows=[build()], chat=chat, close_on_shutdown=True)  # open: no keys, loopback only
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def serve_and_call(model: Any, folder: Path) -> dict[str, Any]:
    async with serving(model, folder) as base:
        # A workflow run, answered when it finishes:
        async with httpx.AsyncClient(base_url=base) as http:
            run = (await http.post("/v1/workflows/first/runs", json={"inputs": {"text": " hi  there "}})).json()
        # The chat, through the OpenAI-compatible endpoint; X-Session-Id keeps the conversation:
        client = AsyncOpenAI(base_url=f"{base}/v1", api_key="unused-in-open-mode")
        answer = ""
        stream = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Hello!"}], stream=True,
            extra_headers={"X-Session-Id": "guide"},
        )
        async for chunk in stream:
            if chunk.choices:
                answer += chunk.choices[0].delta.content or ""
        await client.close()
        return {"run": run, "chat": answer}
