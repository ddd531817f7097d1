"""An A2A agent called by its registered name instead of its URL: the service registry.

`nanobrain serve --registry URL` registers each workflow it serves as an `a2a-agent` (and itself
as a `replica`) with a heartbeat; here the first workflow is served alone and registered by hand.
The caller names the agent (`service="shouter"`; `service: shouter` in YAML) and a live
registration gives the URL. `memory://` works within one process; replicas share
`redis://HOST:6379/0` or `postgresql://USER@HOST/DB`.
"""

from __future__ import annotations

import nanobrain as nb
from nanobrain.infrastructure.services import A2A_AGENT, ServiceRecord, ServiceRegistry, open_registry
from nanobrain.protocols.a2a.client import A2AAgentStep

from .a2a_agents import served_agent


def caller(registry: ServiceRegistry) -> nb.Workflow:
    """A workflow whose `remote` step is whichever live agent is registered as `shouter`."""
    wf = nb.Workflow("caller", inputs={"text": str}, outputs={"reply": str})
    wf.add(A2AAgentStep("remote", service="shouter", registry=registry, call_timeout=30))
    wf.link("inputs.text", "remote.message")
    wf.link("remote.reply", "outputs.reply")
    return wf


async def main(registry_url: str = "memory://") -> tuple[list[str], dict[str, object], list[str]]:
    """Register the agent, call it by name, deregister it; returns what `discover` saw before and after."""
    async with open_registry(registry_url) as registry, served_agent() as url:
        record = ServiceRecord(A2A_AGENT, "shouter", url, {"skills": ["shout"]})
        registration = await registry.register(record, ttl=15)  # a heartbeat every 5 s keeps it alive
        before = [r.name for r in await registry.discover(A2A_AGENT)]
        async with caller(registry) as workflow:
            reply = await workflow.run(text="  found   by name ")
        await registration.stop()  # deregistered now; a killed process's record expires after 15 s
        after = [r.name for r in await registry.discover(A2A_AGENT)]
    return before, reply, after
