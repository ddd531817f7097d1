"""A2A and MCP inside `nanobrain serve`: routers for the app factory, behind its auth.

- `GET /.well-known/agent-card.json`: the card of the primary agent (the chat, else the only or
  first workflow), public as the convention wants, advertising the bearer scheme when the
  server requires credentials; `GET /a2a/{workflow}/.well-known/agent-card.json` for each workflow.
- `POST /a2a/{workflow}/`: the A2A JSON-RPC endpoint of each workflow (1.0 and 0.3), role `run`.
- `GET|POST|DELETE /mcp`: every workflow as an MCP tool over Streamable HTTP, role `run`.

Each part is there only when its extra (`a2a`, `mcp`) is installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..interfaces.http.auth import needs, protected_router
from .paths import CARD_PATH, WORKFLOW_CARD_PATH

if TYPE_CHECKING:
    from ..core.journal import JournalStore
    from ..core.workflow import Workflow


_ANY_JSON = {"requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}}
_RPC_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A JSON-RPC response (errors included, as JSON-RPC errors), or an SSE stream of them",
        "content": {"application/json": {"schema": {}}, "text/event-stream": {"schema": {}}},
    }
}
_MCP_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "MCP messages", "content": {"application/json": {"schema": {}}, "text/event-stream": {}}},
    202: {"description": "A notification or response accepted"},
    **{
        code: {"description": text, "content": {"application/problem+json": {}}}
        for code, text in {
            405: "Method not allowed",
            406: "The Accept header must allow application/json and text/event-stream",
            415: "Content-Type must be application/json",
        }.items()
    },
}


@dataclass
class ProtocolMount:
    """What the app factory adds: routers, the public paths among them, and a lifespan to run."""

    routers: list[APIRouter] = field(default_factory=list)
    public: list[APIRouter] = field(default_factory=list)
    running: list[Callable[[], contextlib.AbstractAsyncContextManager[Any]]] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for start in self.running:
                await stack.enter_async_context(start())
            yield


def protocol_mount(
    workflows: Mapping[str, Workflow],
    *,
    primary: str | None,
    journal: Callable[[], JournalStore] | None = None,
    bearer_auth: Callable[[], bool] = lambda: False,
) -> ProtocolMount:
    """The A2A and MCP routers for the served `workflows` (those whose extra is installed)."""
    mount = ProtocolMount()
    if workflows and importlib.util.find_spec("a2a") is not None:
        _add_a2a(mount, workflows, primary or next(iter(workflows)), journal, bearer_auth)
    if workflows and importlib.util.find_spec("mcp") is not None:
        _add_mcp(mount, workflows)
    return mount


def _add_a2a(
    mount: ProtocolMount,
    workflows: Mapping[str, Workflow],
    primary: str,
    journal: Callable[[], JournalStore] | None,
    bearer_auth: Callable[[], bool],
) -> None:
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.request_handlers.response_helpers import agent_card_to_dict
    from a2a.server.routes import create_jsonrpc_routes

    from .a2a.card import agent_card
    from .a2a.executor import WorkflowExecutor

    endpoints: dict[str, Callable[[Request], Any]] = {}
    stores: dict[str, Any] = {}

    def endpoint(name: str) -> Callable[[Request], Any]:
        """The SDK's JSON-RPC endpoint of one workflow, built on first use with the server's stores."""
        if name not in endpoints:
            store = journal() if journal is not None else None
            if "tasks" not in stores:
                stores["tasks"] = _task_store(store)
            handler = DefaultRequestHandler(
                agent_executor=WorkflowExecutor(workflows[name], store=store),
                task_store=stores["tasks"],
                agent_card=agent_card(workflows[name], "http://127.0.0.1/"),  # capabilities only
            )
            (route,) = create_jsonrpc_routes(handler, "/", enable_v0_3_compat=True)
            endpoints[name] = route.endpoint
        return endpoints[name]

    @contextlib.asynccontextmanager
    async def closing() -> AsyncIterator[None]:
        try:
            yield
        finally:
            endpoints.clear()
            engine = getattr(stores.pop("tasks", None), "engine", None)
            if engine is not None:
                await engine.dispose()

    mount.running.append(closing)

    def card(request: Request, name: str) -> JSONResponse:
        base = str(request.base_url).rstrip("/")
        described = agent_card(workflows[name], f"{base}/a2a/{name}/", bearer_auth=bearer_auth())
        return JSONResponse(agent_card_to_dict(described))

    public = APIRouter(tags=["a2a"])

    @public.get(CARD_PATH, summary="The A2A agent card of the primary agent")
    async def primary_card(request: Request) -> JSONResponse:
        return card(request, primary)

    @public.get(
        WORKFLOW_CARD_PATH,
        summary="The A2A agent card of a workflow",
        responses={404: {"description": "No such workflow", "content": {"application/problem+json": {}}}},
    )
    async def workflow_card(request: Request, workflow: str) -> JSONResponse:
        if workflow not in workflows:
            raise _not_found(workflow)
        return card(request, workflow)

    router = protected_router("a2a")

    @router.post(
        "/a2a/{workflow}/",
        summary="A2A JSON-RPC endpoint of a workflow (SendMessage, SendStreamingMessage, GetTask, ...)",
        responses=_RPC_RESPONSES,
        openapi_extra={**needs("run")["openapi_extra"], **_ANY_JSON},
    )
    async def rpc(request: Request, workflow: str) -> Any:
        if workflow not in workflows:
            raise _not_found(workflow)
        return await endpoint(workflow)(request)

    mount.public.append(public)
    mount.routers.append(router)


def _task_store(journal: Any) -> Any:
    """Where the A2A tasks of the server live: in memory for now.

    Runs are journaled in the server's database, but a2a-sdk's DatabaseTaskStore on the same
    SQLite file waits for the journal's write lock while the SDK holds its session open around
    the run (a hang seen in testing), so a task waiting for input does not survive a restart of
    `nanobrain serve` yet; `a2a_routes(task_store=...)` with a separate database does.
    """
    from a2a.server.tasks import InMemoryTaskStore

    del journal
    return InMemoryTaskStore()


def _not_found(name: str) -> Exception:
    from ..interfaces.http.problems import ApiProblem

    return ApiProblem(404, f"no served workflow is named {name!r}")


class _Delegate(Response):
    """A response that hands the request over to another ASGI app (the MCP SDK's transport).

    The SDK answers client errors with bare text; they become `application/problem+json`
    like every other error of the server.
    """

    def __init__(self, app: ASGIApp) -> None:
        super().__init__()
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        failed: dict[str, Any] = {}
        body = bytearray()

        async def shaped(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                failed.update(message)
                return
            if failed and message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    await _send_problem(send, scope, failed, bytes(body))
                return
            await send(message)

        await self.app(scope, receive, shaped)


async def _send_problem(send: Send, scope: Scope, start: dict[str, Any], body: bytes) -> None:
    import json

    from ..interfaces.http.problems import PROBLEM_JSON, problem_body

    text = body.decode("utf-8", "replace").strip()
    try:  # a JSON-RPC error body: its message is the detail
        detail = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        detail = text or "the MCP request was refused"
    status = int(start["status"])
    payload = json.dumps(problem_body(status, str(detail), instance=scope.get("path"))).encode()
    # Keep the SDK's own headers (such as Allow) but not its content type and length.
    kept = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-type", b"content-length")]
    headers = [*kept, (b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _add_mcp(mount: ProtocolMount, workflows: Mapping[str, Workflow]) -> None:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    from .mcp.server import mcp_server

    server = mcp_server(list(workflows.values()))
    holder: dict[str, StreamableHTTPSessionManager] = {}

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[None]:
        # A session manager runs once: a new one for each start of the app.
        manager = StreamableHTTPSessionManager(app=server)
        async with manager.run():
            holder["manager"] = manager
            try:
                yield
            finally:
                holder.pop("manager", None)

    mount.running.append(running)
    router = protected_router("mcp")

    async def mcp_endpoint(request: Request) -> Response:
        manager = holder.get("manager")
        if manager is None:
            from ..interfaces.http.problems import ApiProblem

            raise ApiProblem(503, "the MCP endpoint is not running (the app's lifespan has not started)")
        return _Delegate(manager.handle_request)

    # One operation per method (one shared function would give them one OpenAPI operation id).
    for method, summary in (
        ("POST", "MCP over Streamable HTTP: send a JSON-RPC message (every served workflow is a tool)"),
        ("GET", "MCP over Streamable HTTP: the server-to-client event stream of a session"),
        ("DELETE", "MCP over Streamable HTTP: end a session"),
    ):
        router.add_api_route(
            "/mcp",
            mcp_endpoint,
            methods=[method],
            summary=summary,
            responses=_MCP_RESPONSES,
            operation_id=f"mcp_{method.lower()}",
            **needs("run"),
        )

    mount.routers.append(router)
