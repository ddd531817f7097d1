"""A workflow as an A2A agent: Starlette routes (card + JSON-RPC) from a2a-sdk's route factories.

`a2a_routes` gives the routes to mount in another app (`nanobrain serve` does); `a2a_app` a
Starlette app that runs alone under uvicorn. One endpoint serves A2A 1.0 clients and, through
the SDK's compatibility layer, 0.3 clients (`message/send`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...optional import require

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.routing import BaseRoute

    from ...core.journal import JournalStore
    from ...core.workflow import Workflow

RPC_PATH = "/a2a/"
MAX_BODY_BYTES = 10 * 1024 * 1024
"""Largest JSON-RPC request accepted; a larger one is answered with -32600 (Payload too large)."""


def a2a_routes(
    workflow: Workflow,
    *,
    base_url: str,
    rpc_path: str = RPC_PATH,
    store: JournalStore | None = None,
    task_store: Any = None,
    bearer_auth: bool = False,
    max_body_bytes: int = MAX_BODY_BYTES,
    **card_options: Any,
) -> list[BaseRoute]:
    """The card at `/.well-known/agent-card.json` and the JSON-RPC endpoint at `rpc_path`.

    `base_url` is where clients reach this app (the card names `base_url + rpc_path`). `store`
    keeps the runs (durable journal; memory by default), `task_store` the A2A tasks (an a2a-sdk
    `TaskStore`; memory by default): give persistent ones for tasks that survive a restart.
    """
    require("a2a", extra="a2a", purpose="an A2A server")
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore

    from .card import agent_card
    from .executor import WorkflowExecutor

    card = agent_card(workflow, base_url.rstrip("/") + rpc_path, bearer_auth=bearer_auth, **card_options)
    handler = DefaultRequestHandler(
        agent_executor=WorkflowExecutor(workflow, store=store),
        task_store=task_store if task_store is not None else InMemoryTaskStore(),
        agent_card=card,
    )
    # Both spellings of the endpoint: 0.3 clients such as fasta2a's post to `URL/` whatever the card says.
    paths = {rpc_path, rpc_path.rstrip("/") or "/", rpc_path.rstrip("/") + "/"}
    rpc_routes = [r for path in sorted(paths) for r in create_jsonrpc_routes(handler, path, enable_v0_3_compat=True)]
    return [*create_agent_card_routes(card), *(_limited(route, max_body_bytes) for route in rpc_routes)]


def _limited(route: Any, limit: int) -> Any:
    """The route with its request bodies capped at `limit` bytes.

    The SDK's dispatcher turns an HTTP 413 raised while it reads the body into the JSON-RPC
    error -32600, so the cap only has to raise that while the body streams in.
    """
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.routing import Route

    endpoint = route.endpoint

    async def capped(request: Request) -> Any:
        declared = request.headers.get("content-length", "")
        received = 0
        receive = request.receive

        async def counting() -> Any:
            nonlocal received
            if declared.isdigit() and int(declared) > limit:
                raise HTTPException(413)
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413)
            return message

        return await endpoint(Request(request.scope, counting))

    return Route(route.path, endpoint=capped, methods=list(route.methods or ["POST"]))


def a2a_app(workflow: Workflow, *, base_url: str, **options: Any) -> Starlette:
    """A Starlette app serving `workflow` over A2A (run it with uvicorn)."""
    from starlette.applications import Starlette

    return Starlette(routes=a2a_routes(workflow, base_url=base_url, **options))
