"""`AgentRegistry`: agents known by name — local steps and remote A2A agents — with what they can do.

A local agent's skills are given when it is registered; a remote agent's come from its card
(fetched on `refresh`, again after `max_age`). `check()` probes health: a local agent is
healthy, a remote one when its card answers within the timeout.

With a service registry (`services=`), a remote agent can be named by its registered name
instead of a URL (`add_service`), and `discover()` adds every live registered A2A agent, with
the skills it registered, so that skill rules find agents started elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.errors import NanoBrainError
from ..core.steps import Step

if TYPE_CHECKING:
    from ..infrastructure.services.registry import ServiceRegistry
    from ..protocols.a2a.client import RemoteAgent


class UnknownAgent(NanoBrainError, KeyError):
    """No agent is registered under that name."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class AgentEntry:
    """One known agent: a local step or a remote A2A agent, its description and skills, its health."""

    name: str
    target: Step | RemoteAgent
    description: str = ""
    #: Skill ids and tags (what delegation rules match on).
    skills: set[str] = field(default_factory=set)
    healthy: bool = True
    problem: str = ""
    refreshed: float = 0.0

    @property
    def remote(self) -> bool:
        return not isinstance(self.target, Step)

    def describe(self) -> dict[str, Any]:
        where = getattr(self.target, "url", "local")
        return {
            "name": self.name,
            "where": where,
            "description": self.description,
            "skills": sorted(self.skills),
            "healthy": self.healthy,
            "problem": self.problem,
        }


class AgentRegistry:
    """Agents by name (in memory); remote ones also by their names in a service registry (`services`)."""

    def __init__(
        self, *, max_age: float = 300.0, timeout: float = 5.0, services: ServiceRegistry | str | None = None
    ) -> None:
        self.max_age = max_age
        self.timeout = timeout
        self._entries: dict[str, AgentEntry] = {}
        self._owns_services = isinstance(services, str)
        if isinstance(services, str):
            from ..infrastructure.services.registry import open_registry

            services = open_registry(services)
        self.services: ServiceRegistry | None = services

    def add(self, name: str, target: Step | RemoteAgent, *, skills: Iterable[str] = (), description: str = "") -> None:
        if name in self._entries:
            raise ValueError(f"an agent named {name!r} is already registered")
        text = description or (target.description if isinstance(target, Step) else "")
        self._entries[name] = AgentEntry(name, target, text, set(skills))

    def add_remote(self, name: str, url: str, **options: Any) -> RemoteAgent:
        """Register the A2A agent at `url` (its card is read on `refresh`)."""
        from ..protocols.a2a.client import RemoteAgent

        remote = RemoteAgent(url, name=name, **options)
        self.add(name, remote)
        return remote

    def add_service(self, name: str, service: str | None = None, **options: Any) -> RemoteAgent:
        """Register the A2A agent registered as `service` (default: `name`) in the service registry."""
        from ..protocols.a2a.client import RemoteAgent

        if self.services is None:
            raise ValueError(f"agent {name!r} names a registered service, but this registry has no service registry")
        options.setdefault("connect_timeout", self.timeout)
        remote = RemoteAgent(name=name, service=service or name, registry=self.services, **options)
        self.add(name, remote)
        return remote

    async def discover(self, *, skill: str | None = None) -> list[str]:
        """Add each live registered A2A agent not known yet (those offering `skill`, when given).

        Agents are added under their registered names, with the description and skills they
        registered; agents added from the service registry before and no longer registered are
        marked unhealthy (and healthy again when they come back). Returns the names added.
        """
        from ..infrastructure.services.registry import A2A_AGENT

        if self.services is None:
            raise ValueError("discover() needs a service registry: AgentRegistry(services=...)")
        live = await self.services.discover(A2A_AGENT)
        added: list[str] = []
        for record in live:
            skills = {str(s) for s in record.metadata.get("skills", ())}
            if record.name in self._entries or (skill is not None and skill not in skills):
                continue
            self.add_service(record.name)
            entry = self._entries[record.name]
            entry.skills, entry.description = skills, str(record.metadata.get("description", ""))
            added.append(record.name)
        registered = {r.name for r in live}
        for entry in self._entries.values():
            service = getattr(entry.target, "service", None) if entry.remote else None
            if service is not None and getattr(entry.target, "registry", None) is self.services:
                entry.healthy = service in registered
                entry.problem = "" if entry.healthy else f"no live A2A agent is registered as {service!r}"
        return added

    async def aclose(self) -> None:
        """Close the remote agents' connections, and the service registry if this opened it."""
        for entry in self._entries.values():
            if entry.remote:
                await entry.target.aclose()
        if self._owns_services and self.services is not None:
            await self.services.aclose()

    def get(self, name: str) -> AgentEntry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise UnknownAgent(f"no agent named {name!r} (agents: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def entries(self) -> list[AgentEntry]:
        return list(self._entries.values())

    def with_skill(self, skill: str) -> list[AgentEntry]:
        """Healthy agents offering `skill` (a skill id or tag)."""
        return [e for e in self._entries.values() if skill in e.skills and e.healthy]

    async def refresh(self, *, force: bool = False) -> None:
        """Fetch the cards of remote agents (those older than `max_age`, or all with `force`)."""
        now = time.monotonic()
        stale = [e for e in self._entries.values() if e.remote and (force or now - e.refreshed > self.max_age)]
        await asyncio.gather(*(self._refresh(e) for e in stale))

    async def check(self) -> dict[str, bool]:
        """Probe every agent now; returns health by name."""
        await self.refresh(force=True)
        return {e.name: e.healthy for e in self._entries.values()}

    async def _refresh(self, entry: AgentEntry) -> None:
        remote: Any = entry.target
        remote._card = None  # re-read the card, not the cached one
        await remote.aclose()
        try:
            card = await asyncio.wait_for(remote.card(), self.timeout)
        except Exception as exc:  # an unreachable agent is unhealthy, not an error of the registry
            entry.healthy, entry.problem = False, f"{type(exc).__name__}: {exc}"
            return
        entry.healthy, entry.problem = True, ""
        entry.description = card.description
        entry.skills = {s.id for s in card.skills} | {t for s in card.skills for t in s.tags}
        entry.refreshed = time.monotonic()
