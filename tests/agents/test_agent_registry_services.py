"""Remote agents named by their registration in the service registry (real PostgreSQL and Redis),
instead of a URL: the agent registry, `kind: a2a_agent` and `kind: delegate` resolve them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.infrastructure.services.backends import Backend, open_backend

import nanobrain as nb
from nanobrain.agents.delegation import DelegationEngine, Rule
from nanobrain.agents.registry import AgentRegistry
from nanobrain.config import load_workflow
from nanobrain.errors import ProtocolError
from nanobrain.infrastructure.services import A2A_AGENT, ServiceRecord

pytest.importorskip("a2a", reason="needs the a2a extra")

from tests.protocols import a2a_peer
from tests.protocols.conftest import served

from nanobrain.protocols.a2a import a2a_app


@pytest.fixture(params=["postgresql", "redis"])
async def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The service registries that replicas on several machines share."""
    async for opened in open_backend(request.param, tmp_path):
        yield opened


def shouter_record(base: str, **metadata: object) -> ServiceRecord:
    return ServiceRecord(A2A_AGENT, "shouter", base, {"skills": ["shout", "loud"], **metadata})


async def test_the_agent_registry_calls_an_agent_by_its_registered_name(shared_backend: Backend) -> None:
    registry = shared_backend.registry
    async with served(lambda base: a2a_app(a2a_peer.shout(), base_url=base)) as base:
        registration = await registry.register(shouter_record(base), ttl=30)
        agents = AgentRegistry(services=registry, timeout=5)
        try:
            remote = agents.add_service("loud-one", "shouter")
            engine = DelegationEngine(agents, default="loud-one")
            assert await engine.delegate("quiet please") == "QUIET PLEASE!"
            assert remote.url == base  # looked up in the registry
            assert await agents.check() == {"loud-one": True}  # and its card read from there
            assert agents.get("loud-one").skills == {"shout", "workflow"}  # the card's skill and tag
        finally:
            await registration.stop()
            await agents.aclose()


async def test_discovered_agents_serve_skill_rules_and_turn_unhealthy_when_they_leave(
    shared_backend: Backend,
) -> None:
    registry = shared_backend.registry
    async with served(lambda base: a2a_app(a2a_peer.shout(), base_url=base)) as base:
        registration = await registry.register(shouter_record(base, description="Shouts"), ttl=30)
        await registry.register(ServiceRecord(A2A_AGENT, "mumbler", "http://127.0.0.1:9", {"skills": ["quiet"]}), 30)
        agents = AgentRegistry(services=registry, timeout=5)
        try:
            assert await agents.discover(skill="loud") == ["shouter"]
            assert agents.get("shouter").description == "Shouts"
            engine = DelegationEngine(agents, [Rule.skill_rule("loud")])
            assert await engine.delegate("hello there") == "HELLO THERE!"
            assert await agents.discover() == ["mumbler"]  # the rest; known ones are not added twice
            await registration.stop()  # the shouter leaves
            assert await agents.discover() == []
            assert agents.get("shouter").healthy is False
            assert "no live A2A agent is registered as 'shouter'" in agents.get("shouter").problem
            assert agents.with_skill("loud") == []
        finally:
            await agents.aclose()


def caller_yaml(step: str) -> str:
    return (
        "name: caller\ninputs: {message: str}\noutputs: {reply: str}\nsteps:\n"
        f"{step}"
        "links:\n  - {from: inputs.message, to: remote.message}\n  - {from: remote.reply, to: outputs.reply}\n"
    )


async def test_a2a_agent_and_delegate_steps_name_a_registered_service(
    shared_backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = shared_backend.registry
    async with served(lambda base: a2a_app(a2a_peer.shout(), base_url=base)) as base:
        registration = await registry.register(shouter_record(base), ttl=30)
        try:
            step = f"  remote:\n    kind: a2a_agent\n    service: shouter\n    registry: '{shared_backend.url}'\n"
            (tmp_path / "step.yaml").write_text(caller_yaml(step))
            async with load_workflow(tmp_path / "step.yaml") as workflow:
                assert await workflow.run(message="by name") == {"reply": "BY NAME!"}
            # The registry from the environment, and a delegation target by name.
            monkeypatch.setenv("NANOBRAIN_REGISTRY_URL", shared_backend.url)
            delegate = "  remote:\n    kind: delegate\n    agents:\n      loud: {service: shouter}\n    default: loud\n"
            (tmp_path / "delegate.yaml").write_text(caller_yaml(delegate))
            async with load_workflow(tmp_path / "delegate.yaml") as workflow:
                assert await workflow.run(message="delegated") == {"reply": "DELEGATED!"}
            # Discovery: a skill rule finds the registered agent without naming it.
            discover = "  remote:\n    kind: delegate\n    discover: true\n    rules: [{skill: loud}]\n"
            (tmp_path / "discover.yaml").write_text(caller_yaml(discover))
            async with load_workflow(tmp_path / "discover.yaml") as workflow:
                assert await workflow.run(message="found") == {"reply": "FOUND!"}
        finally:
            await registration.stop()


async def test_a_service_with_no_live_registration_is_a_clear_error(shared_backend: Backend) -> None:
    from nanobrain.protocols.a2a.client import RemoteAgent

    await shared_backend.registry.register(ServiceRecord(A2A_AGENT, "other", "http://127.0.0.1:9"), ttl=30)
    remote = RemoteAgent(service="shouter", registry=shared_backend.url)
    try:
        with pytest.raises(ProtocolError) as caught:
            await remote.send("anyone?")
    finally:
        await remote.aclose()
    assert "no live A2A agent is registered as 'shouter'" in str(caught.value)
    assert "(registered: other)" in str(caught.value)


def test_a_registered_service_without_a_registry_names_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NANOBRAIN_REGISTRY_URL", raising=False)
    (tmp_path / "a.yaml").write_text(caller_yaml("  remote:\n    kind: a2a_agent\n    service: shouter\n"))
    with pytest.raises(nb.ConfigError, match=r"steps\.remote\.service: service 'shouter' needs a service registry"):
        load_workflow(tmp_path / "a.yaml")
    both = "  remote:\n    kind: a2a_agent\n    service: shouter\n    url: http://127.0.0.1:1\n"
    (tmp_path / "b.yaml").write_text(caller_yaml(both))
    with pytest.raises(nb.ConfigError, match=r"exactly one of url .* or service"):
        load_workflow(tmp_path / "b.yaml")


async def test_agents_list_shows_registered_agents_with_their_cards(shared_backend: Backend) -> None:
    import asyncio
    import json

    from typer.testing import CliRunner

    from nanobrain.interfaces.cli import app

    async with served(lambda base: a2a_app(a2a_peer.shout(), base_url=base, tags=["loud"])) as base:
        registration = await shared_backend.registry.register(shouter_record(base), ttl=30)
        try:
            args = ["agents", "list", "--registered", "--registry", shared_backend.url, "--json"]
            done = await asyncio.to_thread(CliRunner().invoke, app, args)
        finally:
            await registration.stop()
    assert done.exit_code == 0, done.output
    (row,) = json.loads(done.stdout)
    assert (row["name"], row["where"], row["healthy"]) == ("shouter", base, True)
    assert row["skills"] == ["loud", "shout"] and row["description"] == "Shout a text back, word by word"
    missing = CliRunner().invoke(app, ["agents", "list", "--registered"], env={"NANOBRAIN_REGISTRY_URL": ""})
    assert missing.exit_code != 0 and "--registered needs a service registry" in missing.output



async def test_after_its_replica_goes_away_the_agent_is_looked_up_again(shared_backend: Backend) -> None:
    import contextlib

    from nanobrain.protocols.a2a.client import RemoteAgent

    registry = shared_backend.registry
    remote = RemoteAgent(service="shouter", registry=registry, connect_timeout=5)
    # The second server starts first: uvicorn restores signal handlers on exit, so servers in one
    # thread must stop in the reverse order of their start (else a stale handler outlives them).
    async with (
        served(lambda b: a2a_app(a2a_peer.shout(), base_url=b)) as second,
        contextlib.AsyncExitStack() as first_server,
    ):
        first = await first_server.enter_async_context(served(lambda b: a2a_app(a2a_peer.shout(), base_url=b)))
        await registry.announce(shouter_record(first, replica="first"), 30)
        assert await remote.send("one") == {"result": "ONE!"} and remote.url == first
        await registry.announce(shouter_record(second, replica="second"), 30)  # a replica joins
        # The first replica stops: it deregisters and its port closes.
        (gone,) = [r for r in await registry.discover(A2A_AGENT, "shouter") if r.url == first]
        await registry.deregister(gone.id)
        await first_server.aclose()
        with pytest.raises(ProtocolError):
            await remote.send("two")  # still connected to the first: this call fails (retry: would repeat it)
        assert await remote.send("three") == {"result": "THREE!"} and remote.url == second  # looked up again
        await remote.aclose()
