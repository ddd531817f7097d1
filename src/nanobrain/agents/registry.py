"""`AgentRegistry`: agents known by name — local steps and remote A2A agents — with what they can do.

A local agent's skills are given when it is registered; a remote agent's come from its card
(fetched on `refresh`, again after `max_age`). `check()` probes health: a local agent is
healthy, a remote one when its card answers within the timeout.
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
    """Agents by name (in memory)."""

    def __init__(self, *, max_age: float = 300.0, timeout: float = 5.0) -> None:
        self.max_age = max_age
        self.timeout = timeout
        self._entries: dict[str, AgentEntry] = {}

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
