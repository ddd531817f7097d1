"""An agent pool of remote A2A agents: `kind: parallel` with `kind: a2a_agent` processors, so the
existing pool's balancer, breakers and failover spread requests over several agent instances."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("a2a")

from nanobrain.config import load_workflow
from nanobrain.protocols.a2a import a2a_app

from . import a2a_peer
from .conftest import free_port, served


async def test_a_pool_of_remote_agents_fails_over_from_one_that_is_down(tmp_path: Path) -> None:
    async with (
        served(lambda base: a2a_app(a2a_peer.shout(), base_url=base)) as first,
        served(lambda base: a2a_app(a2a_peer.shout(), base_url=base)) as second,
    ):
        down = f"http://127.0.0.1:{free_port()}"
        path = tmp_path / "pool.yaml"
        path.write_text(
            "name: pooled\ninputs: {message: str}\noutputs: {reply: str}\nsteps:\n"
            "  agents:\n    kind: parallel\n    balancer: round_robin\n    failover: {attempts: 3}\n"
            "    processors:\n"
            f"      a: {{kind: a2a_agent, url: '{first}', call_timeout: 20}}\n"
            f"      b: {{kind: a2a_agent, url: '{down}', call_timeout: 20}}\n"
            f"      c: {{kind: a2a_agent, url: '{second}', call_timeout: 20}}\n"
            "links:\n  - {from: inputs.message, to: agents.message}\n  - {from: agents.reply, to: outputs.reply}\n"
        )
        workflow = load_workflow(path)
        pool = workflow.steps["agents"].pool  # type: ignore[attr-defined]
        try:
            replies = await asyncio.gather(*(workflow.run(message=f"hi {i}") for i in range(6)))
        finally:
            await workflow.aclose()
    assert sorted(r["reply"] for r in replies) == sorted(f"HI {i}!" for i in range(6))
    # The agent that is down was tried and its requests went to the others.
    assert pool["b"].failures >= 1 and pool["b"].calls == pool["b"].failures
    assert pool["a"].calls + pool["c"].calls - pool["a"].failures - pool["c"].failures == 6
