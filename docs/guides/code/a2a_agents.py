"""A workflow served as an A2A agent, and called from another workflow as a step.

`nanobrain serve` publishes every served workflow at `/a2a/NAME/` the same way; here the first
workflow is served alone (`a2a_app` on uvicorn, 127.0.0.1) and a second workflow uses it as its
`shout` step through `A2AAgentStep` (`kind: a2a_agent` in YAML).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

import nanobrain as nb
from nanobrain.protocols.a2a.client import A2AAgentStep
from nanobrain.protocols.a2a.server import a2a_app

from .first_workflow import build


@asynccontextmanager
async def served_agent() -> AsyncIterator[str]:
    """Serve the first workflow over A2A; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(a2a_app(build(), base_url=url), log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
            await asyncio.sleep(0.01)
        yield url
    finally:
        server.should_exit = True
        await task


def caller(url: str) -> nb.Workflow:
    """A workflow whose `remote` step is the agent at `url`."""
    wf = nb.Workflow("caller", inputs={"text": str}, outputs={"reply": str})
    wf.add(A2AAgentStep("remote", url, call_timeout=30))
    wf.link("inputs.text", "remote.message")
    wf.link("remote.reply", "outputs.reply")
    return wf


async def main() -> dict[str, object]:
    async with served_agent() as url:
        workflow = caller(url)
        try:
            return await workflow.run(text="  over   the wire ")
        finally:
            await workflow.steps["remote"].aclose()
