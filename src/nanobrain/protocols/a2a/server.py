"""A workflow as an A2A agent: Starlette routes (card + JSON-RPC) from a2a-sdk's route factories.

`a2a_routes` gives the routes to mount in another app (`nanobrain serve` does); `a2a_app` a
Starlette app that runs alone under uvicorn. One endpoint serves A2A 1.0 clients and, through
the SDK's compatibility layer, 0.3 clients (`message/send`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import require

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.routing import BaseRoute

    from ...core.journal import JournalStore
    from ...core.workflow import Workflow

RPC_PATH = "/a2a"


def a2a_routes(
    workflow: Workflow,
    *,
    base_url: str,
    rpc_path: str = RPC_PATH,
    store: JournalStore | None = None,
    task_store: Any = None,
    bearer_auth: bool = False,
    **card_options: Any,
) -> list[BaseRoute]:
    """The card at `/.well-known/agent-card.json` and the JSON-RPC endpoint at `rpc_path`.

    `base_url` is where clients reach this app (the card names `base_url + rpc_path`). `store`
    keeps the runs (durable journal; memory by default), `task_store` the A2A tasks (an a2a-sdk
    `TaskStore`; memory by default): give persistent ones for tasks that survive a restart.
    """
    require("a2a", "a2a")
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
    return [
        *create_agent_card_routes(card),
        *create_jsonrpc_routes(handler, rpc_path, enable_v0_3_compat=True),
    ]


def a2a_app(workflow: Workflow, *, base_url: str, **options: Any) -> Starlette:
    """A Starlette app serving `workflow` over A2A (run it with uvicorn)."""
    from starlette.applications import Starlette

    return Starlette(routes=a2a_routes(workflow, base_url=base_url, **options))
