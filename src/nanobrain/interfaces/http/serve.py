"""Running the app under uvicorn: safe binding, and a clean stop on SIGINT, SIGTERM and SIGHUP.

On a signal the server stops accepting connections and new runs, cancels the runs and chat
turns in flight (a chat turn keeps its partial answer, marked interrupted), lets their streams
end, closes what it opened, and returns: the process exits cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.errors import NanoBrainError
from ...infrastructure.security.redaction import mask_url, redact
from ..signals import STOP_SIGNALS


class UnsafeBind(NanoBrainError):
    """Listening beyond this machine without authentication was refused."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def check_bind(host: str, *, auth_configured: bool, insecure: bool) -> None:
    """Refuse a non-loopback address without authentication, unless `insecure`."""
    if is_loopback(host) or auth_configured or insecure:
        return
    raise UnsafeBind(
        f"refusing to listen on {host} without authentication: anyone who can reach it could run workflows. "
        "Create an API key first (`nanobrain keys create NAME --role run`; clients send it as "
        "`Authorization: Bearer KEY`), or configure JWT (--jwt-secret / --jwt-public-key), "
        "or pass --insecure if a proxy in front of the server authenticates requests."
    )


def make_server(app: Any, host: str, port: int, *, log_level: str = "info", graceful_seconds: int = 10) -> Any:
    """A uvicorn server for `app` that stops cleanly on SIGINT, SIGTERM and SIGHUP."""
    import uvicorn

    from .app import ServerState, stop_work

    state: ServerState = app.state.nanobrain

    class Server(uvicorn.Server):
        stopping: asyncio.Task[None] | None = None
        loop: asyncio.AbstractEventLoop | None = None

        async def serve(self, sockets: Any = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().serve(sockets)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn's own version handles SIGINT and SIGTERM and re-raises them after the
            # shutdown (so the process dies by the signal): we handle SIGHUP too, and exit cleanly.
            # (The CLI's StopSignals cancels the work outright; a server first drains its streams.)
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True  # a second Ctrl-C: do not wait any longer
            self.should_exit = True
            if self.loop is not None:
                # (A signal handler may interrupt the loop anywhere: only call_soon_threadsafe is safe.)
                self.loop.call_soon_threadsafe(self.begin_stop)

        def begin_stop(self) -> None:
            if self.stopping is None:
                # Open streams would keep the server waiting: end the work behind them now.
                self.stopping = asyncio.ensure_future(stop_work(state))

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=graceful_seconds,
        lifespan="on",
        server_header=False,
    )
    return Server(config)


@dataclass
class ServeOptions:
    """What `nanobrain serve` was asked for."""

    files: Sequence[Path] = ()
    host: str = "127.0.0.1"
    port: int = 8080
    insecure: bool = False
    chat: bool = True
    model: str | None = None
    chat_config: Path | None = None
    database: str | None = None
    cors_origins: Sequence[str] = ()
    max_body_bytes: int = 1 << 20
    rate_limit: float | None = None
    jwt: Any = None  # JwtSettings
    audit_log: Path | None = None
    log_level: str = "info"
    #: Redis shared by the replicas: runs (watch, list, cancel from any replica) and rate limits.
    #: Several URLs, comma-separated, spread that state over several Redis servers.
    redis: str | None = None
    registry: str | None = None  # the service registry's URL: register the replica and its A2A agents
    registry_ttl: float = 15.0
    advertise_url: str | None = None  # where other processes reach this server (default: from host and port)


async def open_app(options: ServeOptions, *, report: Callable[[str], None] = print) -> tuple[Any, list[Any]]:
    """The app for `options`, checked (workflows valid, model loadable, safe bind); and what to close after."""
    from ...config.loader import load_workflow
    from ...infrastructure.data.database import Database
    from ...infrastructure.data.journal import SqlJournalStore
    from ...infrastructure.security.api_keys import ApiKeyStore
    from ...workflows.chat.app import ChatApp
    from .app import ServerConfig, create_app
    from .audit import AuditLog
    from .auth import Authenticator, RateLimits

    workflows = []
    for file in options.files:
        if not file.exists():
            raise NanoBrainError(f"file not found: {file}")
        workflow = load_workflow(file)
        workflow.validate()
        workflows.append(workflow)
    if not options.chat and not workflows:
        raise NanoBrainError("nothing to serve: name workflow files, or drop --no-chat to serve the chat")
    chat = None
    database = Database(options.database)
    closing: list[Any] = [database]
    try:
        keys = ApiKeyStore(database)
        active = await keys.active_count()
        auth_configured = active > 0 or options.jwt is not None
        # Before loading any model: a refused bind should not take seconds to say so.
        check_bind(options.host, auth_configured=auth_configured, insecure=options.insecure)
        redis = await _open_redis(options.redis, closing) if options.redis else None
        if redis is not None:
            await _share_breakers(workflows, redis, closing)
        if options.chat:
            chat = await ChatApp.open(config=options.chat_config, model=options.model, database_url=options.database)
            closing.append(chat)
            await chat.warm_up()  # a model that cannot be used is an error now, not at the first request
        limits: Any = None
        if options.rate_limit and redis is not None:
            from .shared_limits import RedisRateLimits

            limits = RedisRateLimits(redis, options.rate_limit)  # one budget across the replicas
        elif options.rate_limit:
            limits = RateLimits(options.rate_limit)
        auth = Authenticator(keys, jwt=options.jwt, required=auth_configured, rate_limits=limits)
        audit = AuditLog(options.audit_log) if options.audit_log else AuditLog()
        config = ServerConfig(max_body_bytes=options.max_body_bytes, cors_origins=tuple(options.cors_origins))
        journal = SqlJournalStore(database)  # durable runs live beside the keys and the history
        closing.append(journal)
        bus = None
        if redis is not None:
            from .run_bus import RunBus

            bus = RunBus(redis, max_events=config.max_events_per_run)
        app = create_app(
            workflows=workflows, chat=chat, auth=auth, config=config, audit=audit, journal=journal, run_bus=bus
        )
    except BaseException:
        for resource in reversed(closing):
            await resource.aclose()
        raise
    closing.extend(workflows)
    how = []
    if active:
        how.append(f"{active} API key{'s' if active != 1 else ''}")
    if options.jwt is not None:
        how.append("JWT")
    served = ", ".join(app.state.nanobrain.workflows) or "nothing"
    shared = ""
    if options.redis:
        shared = "; runs and rate limits shared through Redis at " + ", ".join(
            mask_url(url.strip()) for url in options.redis.split(",") if url.strip()
        )
    report(f"serving {served} on http://{options.host}:{options.port} "
           f"(auth: {' and '.join(how) if how else 'off - no API keys; create one with `nanobrain keys create`'})"
           f"{shared}")
    return app, closing


async def _open_redis(urls: str, closing: list[Any]) -> Any:
    """The Redis nodes of `urls` (comma-separated), each having answered a PING (else a clear error naming
    the URL, its password masked)."""
    from ...infrastructure.data.kv import StoreError
    from .redis_nodes import RedisNodes

    nodes = RedisNodes.from_urls(urls)
    closing.append(nodes)
    listed = [u.strip() for u in urls.split(",") if u.strip()]
    for url, client in zip(listed, nodes.clients, strict=True):
        try:
            await client.ping()
        except Exception as exc:
            said = redact(str(exc)) or type(exc).__name__
            raise StoreError(
                f"cannot reach Redis at {mask_url(url)} (--redis / NANOBRAIN_REDIS_URL): {said}"
            ) from None
    return nodes


async def _share_breakers(workflows: Sequence[Any], redis: Any, closing: list[Any]) -> None:
    """The breakers of every processor pool in `workflows` are shared by the replicas (through the first
    Redis node): a processor tripped in one replica is skipped by all until its cool-down ends."""
    from ...infrastructure.parallel.parallel_step import ParallelStep
    from ...infrastructure.parallel.shared_breaker import RedisBreakerState

    pools = [step.pool for workflow in workflows for step in workflow.walk() if isinstance(step, ParallelStep)]
    if not pools:
        return
    shared = RedisBreakerState(redis.clients[0], prefix=redis.prefix)
    await shared.start()
    closing.append(shared)
    for pool in pools:
        pool.share_breakers(shared)


def run_serve(options: ServeOptions, *, report: Callable[[str], None] = print) -> None:
    """Serve until a signal asks to stop; then close everything and return."""

    from .announce import registered

    async def main() -> None:
        app, closing = await open_app(options, report=report)
        try:
            server = make_server(app, options.host, options.port, log_level=options.log_level)
            async with registered(
                server, app.state.nanobrain.workflows, url=options.registry, host=options.host, port=options.port,
                ttl=options.registry_ttl, advertise=options.advertise_url, report=report,
            ):  # fmt: skip
                await server.serve()
            if server.started is False and not server.should_exit:
                raise NanoBrainError(f"could not listen on {options.host}:{options.port} (see the log above)")
        finally:
            for resource in reversed(closing):
                await resource.aclose()

    asyncio.run(main())
