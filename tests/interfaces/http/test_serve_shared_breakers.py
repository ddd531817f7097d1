"""`nanobrain serve --redis`: the breakers of the served workflows' processor pools are shared by the replicas.
Two servers are opened as `nanobrain serve` opens them (`open_app`), on one real Redis."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from nanobrain.infrastructure.parallel import ParallelStep
from nanobrain.interfaces.http.serve import ServeOptions, open_app

pytest.importorskip("redis", reason="Redis needs the `storage` extra")

CALLS = {"down": 0, "up": 0}

WORKFLOW = """
name: relay
inputs: {x: int}
outputs: {result: int}
steps:
  relay:
    kind: parallel
    balancer: round_robin
    breaker: {min_calls: 1, failure_rate: 1.0, cool_down: 30}
    processors:
      down: {function: "tests.interfaces.http.test_serve_shared_breakers:down"}
      up: {function: "tests.interfaces.http.test_serve_shared_breakers:up"}
links:
  - {from: inputs.x, to: relay.x}
  - {from: relay.result, to: outputs.result}
"""


def down(x: int) -> int:
    CALLS["down"] += 1
    raise ConnectionRefusedError("the upstream behind 'down' refuses connections")


def up(x: int) -> int:
    CALLS["up"] += 1
    return x


async def test_a_processor_tripped_in_one_replica_is_skipped_by_the_other(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "relay.yaml").write_text(WORKFLOW)
    opened: list[tuple[Any, list[Any]]] = []
    try:
        for replica in ("a", "b"):
            options = ServeOptions(
                files=[tmp_path / "relay.yaml"], chat=False, redis=redis_url,
                database=f"sqlite+aiosqlite:///{tmp_path / replica}.db",
            )  # fmt: skip
            opened.append(await open_app(options, report=lambda line: None))
        (pool_a, pool_b) = [_pool(app) for app, _ in opened]
        assert pool_a.shared_breakers is not None and pool_b.shared_breakers is not None
        # The counters of the module the loader imported (it may be another instance than this one).
        calls = next(p.step.fn.__globals__["CALLS"] for p in pool_a.processors if p.name == "down")

        for x in range(3):  # 'down' fails over to 'up', and its breaker opens in replica a
            assert await pool_a.call({"x": x}) == {"result": x}
        assert calls["down"] >= 1
        deadline = time.monotonic() + 5
        while pool_b.shared_breakers.open_until("relay/down") is None:
            assert time.monotonic() < deadline, "replica b never heard that 'down' opened"
            await asyncio.sleep(0.01)

        before = calls["down"]
        for x in range(4):  # replica b never sends work to 'down' while it is open
            assert await pool_b.call({"x": x}) == {"result": x}
        assert calls["down"] == before
    finally:
        for _, closing in reversed(opened):
            for resource in reversed(closing):
                await resource.aclose()


def _pool(app: Any) -> Any:
    (step,) = [s for s in app.state.nanobrain.workflows["relay"].walk() if isinstance(s, ParallelStep)]
    return step.pool
