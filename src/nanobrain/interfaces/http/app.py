"""`create_app`: one FastAPI app built from routers, over the workflows and the chat it serves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI
from starlette.middleware.cors import CORSMiddleware

from ... import __version__
from ...protocols.paths import PUBLIC_PROTOCOL_PATHS
from .audit import AuditLog
from .auth import ROLE_KEY, Authenticator, authorize
from .limits import BodyLimit
from .problems import install as install_problem_handlers
from .runs import RunRegistry

if TYPE_CHECKING:
    from ...core.journal import JournalStore
    from ...core.workflow import Workflow
    from ...workflows.chat.app import ChatApp
    from .run_bus import RunBus

log = logging.getLogger("nanobrain.http")

PUBLIC_PATHS = (
    frozenset({"/health", "/ready", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/", "/ui"})
    | PUBLIC_PROTOCOL_PATHS
)
"""The routes anyone may call: probes, the API's own description, A2A agent cards, and the web UI's page
and assets (the data the page shows comes from the protected routes, with the key the user types in)."""


@dataclass
class ServerConfig:
    """What the server allows: body size, CORS origins, SSE heartbeats, how many finished runs it keeps."""

    max_body_bytes: int = 1 << 20
    cors_origins: Sequence[str] = ()
    heartbeat_seconds: float = 15.0
    keep_finished_runs: int = 1000
    max_events_per_run: int = 10_000


@dataclass
class ServerState:
    """Everything the routers share, at `app.state.nanobrain`."""

    auth: Authenticator
    workflows: dict[str, Workflow]
    chat: ChatApp | None
    config: ServerConfig
    audit: AuditLog
    runs: RunRegistry
    #: Set once every model the chat uses is loaded (what /ready reports).
    model_ready: asyncio.Event = field(default_factory=asyncio.Event)
    model_error: str | None = None
    #: Turns being answered by the OpenAI-compatible endpoint (each persists its partial answer when cancelled).
    turns: set[asyncio.Task[Any]] = field(default_factory=set)
    #: Component checks /ready adds to its own (processor pools of the served workflows).
    health: Any = None


def create_app(
    *,
    workflows: Sequence[Workflow] = (),
    chat: ChatApp | None = None,
    auth: Authenticator | None = None,
    config: ServerConfig | None = None,
    audit: AuditLog | None = None,
    journal: JournalStore | None = None,
    close_on_shutdown: bool = False,
    ui: bool = True,
    run_bus: RunBus | None = None,
) -> FastAPI:
    """The ASGI app serving `workflows` and `chat` (also listed as a workflow).

    `auth` defaults to open mode (a local admin): `nanobrain serve` passes API keys. Durable runs
    are journaled in `journal` (default: the SQL journal under NANOBRAIN_HOME). With
    `close_on_shutdown` the app closes the chat and the workflows when it stops. With `ui` the web
    UI is served at `/`. With `run_bus` (Redis) the runs are shared with the other replicas on
    the same Redis: any of them lists, watches and cancels them.
    """
    from ...protocols.http import protocol_mount
    from .routes import health, openai_chat, run_routes, sessions, workflow_routes

    config = config or ServerConfig()
    served: dict[str, Workflow] = {}
    if chat is not None:
        served[chat.workflow.name] = chat.workflow
    for workflow in workflows:
        if workflow.name in served:
            raise ValueError(f"two served workflows are named {workflow.name!r}: rename one (its `name:`)")
        served[workflow.name] = workflow
    state = ServerState(
        auth=auth or Authenticator(required=False),
        workflows=served,
        chat=chat,
        config=config,
        audit=audit or AuditLog(),
        runs=RunRegistry(
            keep_finished=config.keep_finished_runs,
            max_events=config.max_events_per_run,
            journal=journal,
            bus=run_bus,
        ),
    )

    # A2A (per workflow) and MCP (every workflow a tool), when their extras are installed.
    protocols = protocol_mount(
        served,
        primary=chat.workflow.name if chat is not None else None,
        journal=lambda: state.runs.journal,
        bearer_auth=lambda: state.auth.required,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.runs.open()
        stop_observing = observe()
        warming = asyncio.ensure_future(_warm_up(state))
        try:
            async with protocols.lifespan():
                yield
        finally:
            await stop_work(state)
            await state.runs.aclose()
            warming.cancel()
            await asyncio.gather(warming, return_exceptions=True)
            if close_on_shutdown:
                if chat is not None:
                    await chat.aclose()
                for workflow in workflows:
                    await workflow.aclose()
            stop_observing()

    app = FastAPI(
        title="NanoBrain",
        version=__version__,
        description="Workflows over HTTP and Server-Sent Events, an OpenAI-compatible chat, sessions.",
        lifespan=lifespan,
    )
    app.state.nanobrain = state
    install_problem_handlers(app)
    app.include_router(health.router)
    for module in (workflow_routes, run_routes, openai_chat, sessions):
        _check_roles(module.router)
        app.include_router(module.router)
    for public in protocols.public:
        app.include_router(public)
    for router in protocols.routers:
        _check_roles(router)
        app.include_router(router)
    from ...observability.http import instrument_app, server_health

    observe = instrument_app(app, check_router=_check_roles, workflows=served.values())
    state.health = server_health(served.values())
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Session-Id", "Location", "Retry-After"],
        )
    if ui:
        from ..web import mount_ui

        mount_ui(app)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    return app


def _check_roles(router: APIRouter) -> None:
    """Every route of a protected router declares its role and depends on `authorize`."""
    for route in router.routes:
        path = getattr(route, "path", repr(route))
        extra = getattr(route, "openapi_extra", None) or {}
        dependant = getattr(route, "dependant", None)
        calls = {d.call for d in dependant.dependencies} if dependant is not None else set()
        if ROLE_KEY not in extra or authorize not in calls:
            raise RuntimeError(f"route {path} must declare its role with needs(...) on a protected_router()")


async def _warm_up(state: ServerState) -> None:
    """Load the chat's models now, so the first request does not wait and /ready can tell."""
    try:
        if state.chat is not None:
            await state.chat.warm_up()
    except Exception as exc:  # reported by /ready; requests then get the provider's error
        state.model_error = f"{type(exc).__name__}: {exc}"
        log.error("the chat model could not be loaded: %s", state.model_error)
        return
    state.model_ready.set()


async def stop_work(state: ServerState) -> None:
    """Accept no new work; cancel runs and turns in flight (turns keep their partial answers)."""
    await state.runs.shutdown()
    turns = list(state.turns)
    for task in turns:
        task.cancel()
    await asyncio.gather(*turns, return_exceptions=True)
