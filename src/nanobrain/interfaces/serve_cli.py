"""`nanobrain serve` (the HTTP server) and `nanobrain keys` (its API keys)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text


def serve(
    ctx: typer.Context,
    files: Annotated[
        list[Path] | None, typer.Argument(help="Workflow YAML files to serve (beside the chat).", show_default=False)
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", "-p", min=0, max=65535, envvar="NANOBRAIN_PORT", help="Port to listen on.")
    ] = 8080,
    insecure: Annotated[
        bool, typer.Option("--insecure", envvar="NANOBRAIN_INSECURE",
                           help="Allow a non-loopback address without API keys or JWT.")
    ] = False,
    chat: Annotated[bool, typer.Option("--chat/--no-chat", help="Serve the chat workflow (and /v1/chat).")] = True,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="The chat's model (default: NANOBRAIN_MODEL, else local).")
    ] = None,
    chat_config: Annotated[
        Path | None, typer.Option("--chat-config", help="A chat workflow YAML (default: the bundled chat.yaml).")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option("--database", envvar="NANOBRAIN_DATABASE_URL",
                     help="Database for history and API keys (default: SQLite under NANOBRAIN_HOME)."),
    ] = None,
    cors_origin: Annotated[
        list[str] | None, typer.Option("--cors-origin", help="Allow browsers from this origin (repeatable).")
    ] = None,
    max_body: Annotated[int, typer.Option("--max-body", min=1, help="Largest request body, in bytes.")] = 1 << 20,
    rate_limit: Annotated[
        float | None, typer.Option("--rate-limit", min=0.001, help="Requests per second allowed per key (burst: 1 s).")
    ] = None,
    jwt_secret: Annotated[
        str | None, typer.Option("--jwt-secret", envvar="NANOBRAIN_JWT_SECRET", help="Accept HS256 JWTs signed so.")
    ] = None,
    jwt_public_key: Annotated[
        Path | None, typer.Option("--jwt-public-key", help="Accept RS256/ES256 JWTs verified with this PEM file.")
    ] = None,
    jwt_issuer: Annotated[str | None, typer.Option("--jwt-issuer", help="Required `iss` of JWTs.")] = None,
    jwt_audience: Annotated[str | None, typer.Option("--jwt-audience", help="Required `aud` of JWTs.")] = None,
    audit_log: Annotated[
        Path | None, typer.Option("--audit-log", help="Append the audit log (JSON lines) to this file.")
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option("--redis", envvar="NANOBRAIN_REDIS_URL",
                     help="Redis shared by replicas: runs are watched and cancelled from any replica, "
                          "rate limits are global. Several URLs, comma-separated, spread runs and limits over them."),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option("--registry", envvar="NANOBRAIN_REGISTRY_URL",
                     help="Register this replica and its A2A agents in this service registry "
                          "(redis://HOST:PORT/DB or postgresql://USER@HOST/DB)."),
    ] = None,
    registry_ttl: Annotated[
        float, typer.Option("--registry-ttl", min=0.1, envvar="NANOBRAIN_REGISTRY_TTL",
                            help="Seconds a registration lives without a heartbeat (heartbeats every third of it).")
    ] = 15.0,
    advertise_url: Annotated[
        str | None, typer.Option("--advertise-url", envvar="NANOBRAIN_ADVERTISE_URL",
                                 help="The URL others reach this server at (default: from --host and --port).")
    ] = None,
) -> None:
    """Serve workflows over HTTP and SSE, with an OpenAI-compatible chat endpoint."""
    from .cli import UsageProblem, _err, _reporting

    with _reporting(ctx):
        try:
            from .http.auth import JwtSettings
            from .http.serve import ServeOptions, run_serve
        except ImportError as exc:
            raise UsageProblem(
                f"`nanobrain serve` needs the server extra ({exc.name} is missing): pip install 'nanobrain[server]'"
            ) from None
        jwt = None
        if jwt_secret or jwt_public_key:
            try:
                public_key = jwt_public_key.read_text() if jwt_public_key else None
            except OSError as exc:
                raise UsageProblem(f"--jwt-public-key: cannot read {jwt_public_key}: {exc.strerror or exc}") from None
            algorithms = ("RS256", "ES256") if public_key else ("HS256",)
            jwt = JwtSettings(jwt_secret if not public_key else None, public_key, algorithms, jwt_issuer, jwt_audience)
        options = ServeOptions(
            files=files or [], host=host, port=port, insecure=insecure, chat=chat, model=model,
            chat_config=chat_config, database=database, cors_origins=cors_origin or [], max_body_bytes=max_body,
            rate_limit=rate_limit, jwt=jwt, audit_log=audit_log, redis=redis,
            registry=registry, registry_ttl=registry_ttl, advertise_url=advertise_url,
        )
        err = _err()
        run_serve(options, report=lambda line: err.print(Text(line, style="green")))


keys_app = typer.Typer(help="Create, list and revoke API keys for `nanobrain serve`.", no_args_is_help=True)

DatabaseOption = Annotated[
    str | None,
    typer.Option("--database", envvar="NANOBRAIN_DATABASE_URL",
                 help="Where the keys live (default: SQLite under NANOBRAIN_HOME)."),
]


def _with_keys(work: Callable[[Any], Any], database: str | None) -> Any:
    from ..infrastructure.data.database import Database
    from ..infrastructure.security.api_keys import ApiKeyStore

    async def go() -> Any:
        db = Database(database)
        try:
            return await work(ApiKeyStore(db))
        finally:
            await db.aclose()

    return asyncio.run(go())


class KeyRole(StrEnum):
    read = "read"
    run = "run"
    admin = "admin"


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who or what uses the key (shown in the audit log).")],
    role: Annotated[
        KeyRole, typer.Option("--role", "-r", help="read: look; run: also start runs and chat; admin: everything.")
    ] = KeyRole.run,
    database: DatabaseOption = None,
) -> None:
    """Create a key and print it (it is shown only this once)."""
    from .cli import _err, _reporting

    with _reporting(ctx):
        key, secret = _with_keys(lambda store: store.create(name, role.value), database)
        typer.echo(secret)
        _err().print(
            Text(f"created key {key.id} ({key.name!r}, role {key.role}); store it now: it is not shown again",
                 style="green")
        )


@keys_app.command("list")
def keys_list(ctx: typer.Context, database: DatabaseOption = None) -> None:
    """List keys (never their secrets)."""
    from .cli import _err, _reporting

    with _reporting(ctx):
        keys = _with_keys(lambda store: store.list(), database)
        if not keys:
            _err().print(Text("no API keys (create one with `nanobrain keys create NAME`)", style="dim"))
        for key in keys:
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            typer.echo(f"{key.id}  {key.role:<5}  {state:<24}  {key.created_at:%Y-%m-%d %H:%M}  {key.name}")


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id (see `nanobrain keys list`).")],
    database: DatabaseOption = None,
) -> None:
    """Revoke a key: requests with it are refused (within seconds on a running server)."""
    from .cli import _err, _reporting

    with _reporting(ctx):
        key = _with_keys(lambda store: store.revoke(key_id), database)
        _err().print(Text(f"revoked key {key.id} ({key.name!r})", style="green"))
