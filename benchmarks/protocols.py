"""A2A and MCP through NanoBrain's servers, beside bare SDK servers answering the same requests.

    .venv/bin/python benchmarks/protocols.py            # full run, writes results/protocols.json
    .venv/bin/python benchmarks/protocols.py --quick    # smoke run, writes results/protocols-quick.json

Every server runs under uvicorn on 127.0.0.1 in this process; the load comes from the official clients in
the same event loop (C concurrent callers, each sending its next request when the last one is answered),
interleaving NanoBrain's server and the baseline round by round.

a2a_rps    SendMessage round trips/s (a2a-sdk 1.x client, non-streaming) to a one-step workflow that
           upper-cases the text, served by `nanobrain.protocols.a2a.a2a_app`; baseline: an a2a-sdk server
           whose AgentExecutor upper-cases the text itself (task, one artifact, completed).
mcp_rps    tools/call round trips/s (mcp 2.x client, Streamable HTTP, one session) to the same workflow served
           by `nanobrain.protocols.mcp.mcp_server`; baseline: an `MCPServer` with a tool doing the same.

Target: >= 0.8x the bare server's requests/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from common import BenchmarkArguments, BenchmarkRun, figure, machine_info

import nanobrain as nb

CONCURRENCY = 8


@nb.step
def upper(text: str) -> str:
    return text.upper()


def workflow() -> nb.Workflow:
    flow = nb.Workflow.sequence(upper, name="upper")
    flow.description = "Upper-case a text"
    return flow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def served(make_app: Callable[[str], Any]) -> AsyncIterator[str]:
    import uvicorn

    port = free_port()
    config = uvicorn.Config(make_app(f"http://127.0.0.1:{port}"), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


# -- A2A -------------------------------------------------------------------------------------------------
def bare_a2a_app(base_url: str) -> Any:
    from a2a.helpers.proto_helpers import new_task, new_text_part
    from a2a.server.agent_execution import AgentExecutor, RequestContext
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, TaskState
    from starlette.applications import Starlette

    class Upper(AgentExecutor):
        async def execute(self, context: RequestContext, event_queue: Any) -> None:
            assert context.task_id and context.context_id and context.message
            await event_queue.enqueue_event(
                new_task(context.task_id, context.context_id, TaskState.TASK_STATE_SUBMITTED, history=[context.message])
            )
            updater = TaskUpdater(event_queue, context.task_id, context.context_id)
            await updater.start_work()
            await updater.add_artifact([new_text_part(context.get_user_input().upper())], name="outputs")
            await updater.complete()

        async def cancel(self, context: RequestContext, event_queue: Any) -> None:
            raise NotImplementedError

    card = AgentCard(
        name="upper",
        description="Upper-case a text",
        version="1",
        supported_interfaces=[AgentInterface(url=f"{base_url}/", protocol_binding="JSONRPC", protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="upper", name="upper", description="Upper-case a text", tags=["text"])],
    )
    handler = DefaultRequestHandler(agent_executor=Upper(), task_store=InMemoryTaskStore(), agent_card=card)
    return Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")])


def nanobrain_a2a_app(base_url: str) -> Any:
    from nanobrain.protocols.a2a import a2a_app

    return a2a_app(workflow(), base_url=base_url)


async def a2a_rate(base_url: str, requests: int) -> float:
    from a2a.client import ClientConfig, create_client
    from a2a.types import Message, Part, Role, SendMessageRequest, TaskState

    client = await create_client(base_url, client_config=ClientConfig(streaming=False))

    async def one() -> None:
        message = Message(role=Role.ROLE_USER, message_id=uuid.uuid4().hex, parts=[Part(text="hello agents")])
        async for response in client.send_message(SendMessageRequest(message=message)):
            assert response.task.status.state == TaskState.TASK_STATE_COMPLETED, response

    try:
        await one()  # warm-up: card, connection
        return await rate(one, requests)
    finally:
        await client.close()


# -- MCP -------------------------------------------------------------------------------------------------
def bare_mcp_app(_: str) -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("bare")

    @server.tool()
    def upper(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    return server.streamable_http_app()


def nanobrain_mcp_app(_: str) -> Any:
    from nanobrain.protocols.mcp import mcp_server, mcp_streamable_http_app

    return mcp_streamable_http_app(mcp_server(workflow()))


async def mcp_rate(base_url: str, requests: int) -> float:
    from mcp import Client

    async with Client(f"{base_url}/mcp") as client:
        name = (await client.list_tools()).tools[0].name

        async def one() -> None:
            result = await client.call_tool(name, {"text": "hello tools"})
            assert not result.is_error, result

        await one()
        return await rate(one, requests)


async def rate(one: Callable[[], Awaitable[None]], requests: int) -> float:
    """Requests/s with CONCURRENCY callers sharing `requests` calls."""
    remaining = requests

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one()

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return requests / (time.perf_counter() - started)


async def measure(rounds: int, requests: int) -> dict[str, tuple[list[float], list[float]]]:
    found: dict[str, tuple[list[float], list[float]]] = {"a2a_rps": ([], []), "mcp_rps": ([], [])}
    cases = {
        "a2a_rps": (nanobrain_a2a_app, bare_a2a_app, a2a_rate),
        "mcp_rps": (nanobrain_mcp_app, bare_mcp_app, mcp_rate),
    }
    for key, (ours, bare, measure_one) in cases.items():
        async with served(ours) as ours_url, served(bare) as bare_url:
            for _ in range(rounds):
                found[key][0].append(await measure_one(ours_url, requests))
                found[key][1].append(await measure_one(bare_url, requests))
    return found


def main(argv: list[str] | None = None) -> int:
    args = BenchmarkArguments(__doc__, "protocols", rounds=(5, 2), min_repeat=2).parse(argv)
    run = BenchmarkRun("NanoBrain protocol benchmarks", args, machine_info("a2a-sdk", "mcp", "uvicorn"))
    requests = 40 if args.quick else 300
    found = run.phase("A2A and MCP round trips", lambda: asyncio.run(measure(args.repeat, requests)))
    rows = [
        figure("a2a_rps", "A2A SendMessage round trips/s, a2a_app", "req/s",
               "a2a-sdk server with a hand-written executor", *found["a2a_rps"], higher_is_better=True, target=0.8),
        figure("mcp_rps", "MCP tools/call round trips/s, mcp_server", "req/s",
               "MCPServer with a hand-written tool", *found["mcp_rps"], higher_is_better=True, target=0.8),
    ]  # fmt: skip
    params = {"concurrency": CONCURRENCY, "requests_per_round": requests, "rounds": args.repeat}
    run.finish(rows, params)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
