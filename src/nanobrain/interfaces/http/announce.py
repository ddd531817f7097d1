"""`nanobrain serve` in the service registry: the replica and each A2A agent it serves.

When a registry is configured (`--registry` / NANOBRAIN_REGISTRY_URL), the server registers
itself as a `replica` and each served workflow as an `a2a-agent` (when the `a2a` extra is
installed) once it listens, keeps them alive with heartbeats, and deregisters them as soon as it
starts to stop. A killed server's records expire after the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ipaddress
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...core.workflow import Workflow
    from ...infrastructure.services.registry import Registration, ServiceRegistry

log = logging.getLogger("nanobrain.services")

#: How often the watcher looks whether the server has started or begun to stop.
_POLL_SECONDS = 0.05


def advertised_url(host: str, port: int, advertise: str | None = None) -> str:
    """The base URL other processes reach this server at: `advertise`, else from the bound address."""
    if advertise:
        return advertise.rstrip("/")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return f"http://{host}:{port}"
    if address.is_unspecified:  # 0.0.0.0 or :: listens everywhere; peers need a name
        return f"http://{socket.gethostname()}:{port}"
    return f"http://[{address}]:{port}" if address.version == 6 else f"http://{address}:{port}"


async def register_server(
    registry: ServiceRegistry, base_url: str, workflows: Mapping[str, Workflow], *, ttl: float
) -> list[Registration]:
    """Register the replica at `base_url` and the A2A agent of each of `workflows`."""
    from ... import __version__
    from ...infrastructure.services.registry import A2A_AGENT, REPLICA, ServiceRecord
    from ...protocols.paths import WORKFLOW_CARD_PATH

    replica = ServiceRecord(
        REPLICA, f"{socket.gethostname()}:{base_url.rsplit(':', 1)[-1]}", base_url,
        {"pid": os.getpid(), "version": __version__, "workflows": sorted(workflows)},
    )  # fmt: skip
    records = [replica]
    if workflows and importlib.util.find_spec("a2a") is not None:
        from ...protocols.a2a.card import agent_card

        for name, workflow in workflows.items():
            agent_url = f"{base_url}/a2a/{name}"
            card = agent_card(workflow, agent_url + "/")
            skills = sorted({s.id for s in card.skills} | {t for s in card.skills for t in s.tags})
            metadata = {
                "card": base_url + WORKFLOW_CARD_PATH.format(workflow=name),
                "description": card.description,
                "skills": skills,
                "replica": replica.id,
            }
            records.append(ServiceRecord(A2A_AGENT, name, agent_url, metadata))
    registrations: list[Registration] = []
    try:
        for record in records:
            registrations.append(await registry.register(record, ttl))
    except BaseException:
        for registration in registrations:
            await registration.stop()
        raise
    return registrations


def _bound_port(server: Any, fallback: int) -> int:
    """The port uvicorn listens on (differs from the one asked for with --port 0)."""
    for listener in getattr(server, "servers", ()):
        for sock in getattr(listener, "sockets", ()):
            return int(sock.getsockname()[1])
    return fallback


@contextlib.asynccontextmanager
async def registered(
    server: Any,
    workflows: Mapping[str, Workflow],
    *,
    url: str | None,
    host: str,
    port: int,
    ttl: float,
    advertise: str | None = None,
    report: Callable[[str], None] = print,
) -> AsyncIterator[None]:
    """Around `server.serve()`: register once it listens, deregister when it begins to stop.

    Without `url` nothing happens. An unreachable registry is an error before serving, not later.
    """
    if not url:
        yield
        return
    from ...infrastructure.services.registry import check_ttl, open_registry

    check_ttl(ttl)
    registry = open_registry(url)
    try:
        await registry.discover("replica")  # reachable, and the tables exist, before the first request
    except BaseException:
        await registry.aclose()
        raise
    registrations: list[Registration] = []

    async def watch() -> None:
        # uvicorn offers flags, not events, for "listening" and "stopping": look at them often.
        while True:
            if server.should_exit:
                return
            if server.started:
                break
            await asyncio.sleep(_POLL_SECONDS)
        base = advertised_url(host, _bound_port(server, port), advertise)
        registrations.extend(await register_server(registry, base, workflows, ttl=ttl))
        report(f"registered as {len(registrations)} service(s) in {registry.url} (ttl {ttl:g}s)")
        while True:
            if server.should_exit:  # stop being discovered before draining the requests in flight
                await _deregister(registrations)
                return
            await asyncio.sleep(_POLL_SECONDS)

    watcher = asyncio.create_task(watch(), name="service-registration")
    try:
        yield
    finally:
        watcher.cancel()
        (outcome,) = await asyncio.gather(watcher, return_exceptions=True)
        if isinstance(outcome, Exception):  # the server ran, but unregistered: say so
            log.error("registering in the service registry at %s failed: %s", registry.url, outcome)
        await _deregister(registrations)
        await registry.aclose()


async def _deregister(registrations: list[Registration]) -> None:
    while registrations:
        await registrations.pop().stop()
