"""A real server for the HTTP tests: uvicorn on 127.0.0.1 in a thread with its own event loop.

Everything the app uses (the chat's database, the scripted model's calls) lives on the server's
loop; tests talk to it over real sockets with httpx and the openai SDK, and run code on the
server's loop with `server.call(...)` (for example to count its tasks).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytest.importorskip("fastapi", reason="the HTTP server needs the `server` extra")

import nanobrain as nb
from nanobrain.infrastructure.security.api_keys import ApiKeyStore
from nanobrain.interfaces.http import Authenticator, ServerConfig, create_app
from nanobrain.llm import ScriptedModel
from nanobrain.workflows.chat import ChatApp

T = TypeVar("T")


class LiveServer:
    """Builds the app on the server's own loop, serves it on a free port, stops it on `close()`."""

    def __init__(self, build: Callable[[], Awaitable[tuple[Any, list[Any]]]]) -> None:
        self._build = build
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: Any = None
        self.app: Any = None
        self.port = 0
        self._thread = threading.Thread(target=self._main, name="test-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the test server did not start within 30 s")
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        import uvicorn

        self.loop = asyncio.get_running_loop()
        self.app, closing = await self._build()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        serving = asyncio.ensure_future(self.server.serve(sockets=[sock]))
        while not self.server.started and not serving.done():
            await asyncio.sleep(0.01)
        self._ready.set()
        try:
            await serving
        finally:
            for resource in reversed(closing):
                await resource.aclose()

    def call(self, work: Callable[[], Awaitable[T]], timeout: float = 30) -> T:
        """Run `work()` on the server's loop and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(work(), self.loop).result(timeout)  # type: ignore[arg-type]

    def task_count(self) -> int:
        async def count() -> int:
            return len(asyncio.all_tasks())

        return self.call(count)

    def close(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self._thread.join(30)


# -- workflows the tests serve beside the chat ----------------------------------------------------
@nb.step
def double(x: int) -> int:
    return x * 2


@nb.step
async def nap(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "rested"


@nb.step
def add(a: int, b: int) -> int:
    return a + b


@nb.step
def explode(x: int) -> int:
    raise ValueError(f"cannot handle {x}")


@nb.step
def upstream(x: int) -> int:
    from nanobrain.llm.errors import ServerError

    raise ServerError("HTTP 500: upstream is down (api_key=sk-secretsecret123)", provider="openai", status=500)


def served_workflows() -> list[nb.Workflow]:
    """Small workflows: a pure one, a slow one, a failing one, a provider failure and a long-lived one."""
    accumulate = nb.FunctionStep(lambda x: x, name="echo", trigger=nb.OnUpdate())
    acc = nb.Workflow("echo", inputs={"x": int}, outputs={"last": int}, steps=[accumulate])
    acc.link("inputs.x", "echo.x")
    acc.link("echo.result", "outputs.last")
    return [
        nb.Workflow.sequence(double, name="double"),
        nb.Workflow.sequence(add, name="add"),
        nb.Workflow.sequence(nap, name="nap"),
        nb.Workflow.sequence(explode, name="explode"),
        nb.Workflow.sequence(upstream, name="upstream"),
        acc,
    ]


ROLES = ("read", "run", "admin")


@pytest.fixture
def model() -> ScriptedModel:
    return ScriptedModel(chunk_size=4)


def start_server(
    tmp_path: Path,
    model: ScriptedModel,
    *,
    auth: bool = True,
    config: ServerConfig | None = None,
    authenticator_options: dict[str, Any] | None = None,
    redis: str | None = None,
    shared_rate_limit: tuple[float, float] | None = None,
) -> LiveServer:
    """A server with the chat and `served_workflows()`; with `redis` (URLs, comma-separated; `?prefix=`) it
    shares its runs with other servers on that Redis, and `shared_rate_limit` (rate, burst) is kept there."""
    keys: dict[str, str] = {}

    async def build() -> tuple[Any, list[Any]]:
        from nanobrain.infrastructure.data.journal import SqlJournalStore
        from nanobrain.interfaces.http.audit import AuditLog

        chat = await ChatApp.open(model=model, database_url=f"sqlite+aiosqlite:///{tmp_path / 'server.db'}")
        closing: list[Any] = [chat]
        store = ApiKeyStore(chat.database)
        for role in ROLES:
            _, keys[role] = await store.create(f"{role}-key", role)
        options = dict(authenticator_options or {})
        bus = None
        if redis is not None:
            from nanobrain.interfaces.http.redis_nodes import RedisNodes
            from nanobrain.interfaces.http.run_bus import RunBus
            from nanobrain.interfaces.http.shared_limits import RedisRateLimits

            nodes = RedisNodes.from_urls(redis)
            closing.append(nodes)
            bus = RunBus(nodes, heartbeat_seconds=0.5)
            if shared_rate_limit is not None:
                options["rate_limits"] = RedisRateLimits(nodes, *shared_rate_limit)
        authenticator = (
            Authenticator(store, cache_seconds=0, **options)
            if auth
            else Authenticator(required=False)
        )
        app = create_app(
            workflows=served_workflows(),
            chat=chat,
            auth=authenticator,
            config=config or ServerConfig(heartbeat_seconds=0.2),
            audit=AuditLog(tmp_path / "audit.log"),
            journal=(journal := SqlJournalStore(chat.database)),
            run_bus=bus,
        )
        return app, [*closing, journal]

    server = LiveServer(build).start()
    server.keys = keys  # type: ignore[attr-defined]
    return server


@pytest.fixture
def server(tmp_path: Path, model: ScriptedModel) -> Iterator[LiveServer]:
    live = start_server(tmp_path, model)
    yield live
    live.close()


def headers(server: LiveServer, role: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {server.keys[role]}"}  # type: ignore[attr-defined]
