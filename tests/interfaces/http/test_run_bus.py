"""Two servers sharing one Redis: a run of either is listed, watched (SSE, resumable) and cancelled from
the other, and rate limits draw on one budget. (Real uvicorn servers on 127.0.0.1, a real Redis.)"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.interfaces.http.conftest import LiveServer, headers, start_server
from tests.interfaces.http.test_workflows_and_runs import get, post, sse

from nanobrain.llm import ScriptedModel

pytest.importorskip("redis", reason="Redis needs the `storage` extra")


@pytest.fixture
def replicas(tmp_path: Path, redis_url: str) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two servers on one database (so one key works on both) and one Redis."""
    a = start_server(tmp_path, ScriptedModel(), redis=redis_url)
    try:
        b = start_server(tmp_path, ScriptedModel(), redis=redis_url)
    except BaseException:
        a.close()
        raise
    yield a, b
    b.close()
    a.close()


class Reader:
    """Reads an SSE stream in a thread, so the test can act while it is open."""

    def __init__(self, server: LiveServer, run_id: str, **extra: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.status = 0
        self._request = (f"{server.url}/v1/runs/{run_id}/events", {**headers(server, "read"), **extra})
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        url, request_headers = self._request
        with httpx.stream("GET", url, headers=request_headers, timeout=60) as response:
            self.status = response.status_code
            current: dict[str, Any] = {}
            for line in response.iter_lines():  # live: each event as it comes
                if line.startswith(":"):
                    continue
                if not line:
                    if current:
                        self.events.append(current)
                    current = {}
                    continue
                field, _, value = line.partition(": ")
                current[field] = json.loads(value) if field == "data" else value

    def kinds(self) -> list[str]:
        return [e["event"] for e in list(self.events)]

    def wait_until(self, kind: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while kind not in self.kinds():
            assert time.monotonic() < deadline, f"no {kind!r} event within {timeout} s: {self.kinds()}"
            time.sleep(0.02)

    def join(self, timeout: float = 20) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the stream did not end within {timeout} s: {self.kinds()}"


def test_a_run_of_one_replica_is_watched_and_cancelled_from_the_other(
    replicas: tuple[LiveServer, LiveServer],
) -> None:
    a, b = replicas
    started = post(a, "/v1/workflows/nap/runs", {"inputs": {"seconds": 60}, "mode": "background"})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]

    watching = Reader(b, run_id)
    watching.wait_until("step_started")  # replica b streams what replica a's run does, live
    seen = get(b, f"/v1/runs/{run_id}").json()
    assert seen["status"] == "running" and seen["workflow"] == "nap"
    assert seen["replica"] == a.app.state.nanobrain.runs.bus.replica

    cancelled = post(b, f"/v1/runs/{run_id}/cancel", {})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    # Cancelled on the replica that ran it, not just marked so in Redis.
    assert a.app.state.nanobrain.runs.runs[run_id].status == "cancelled"
    assert get(a, f"/v1/runs/{run_id}").json()["status"] == "cancelled"
    watching.join()
    assert watching.status == 200
    assert watching.kinds()[0] == "stream_started" and watching.kinds()[-1] == "end"
    assert watching.events[-1]["data"]["status"] == "cancelled"
    numbered = [int(e["id"]) for e in watching.events if "id" in e]
    assert numbered == list(range(1, len(numbered) + 1))


def test_a_late_reader_on_the_other_replica_replays_the_run_and_resumes_after_last_event_id(
    replicas: tuple[LiveServer, LiveServer],
) -> None:
    a, b = replicas
    with httpx.stream(
        "POST", f"{a.url}/v1/workflows/double/stream", json={"inputs": {"x": 21}}, headers=headers(a)
    ) as response:
        local = sse(response)
    run_id = local[0]["data"]["run_id"]
    assert local[-1]["data"]["status"] == "succeeded"
    local_numbered = [e for e in local if "id" in e]

    # The run ended before b was asked: b replays it from Redis, with a's numbers and data.
    with httpx.stream("GET", f"{b.url}/v1/runs/{run_id}/events", headers=headers(b, "read")) as response:
        replayed = sse(response)
    assert [e["event"] for e in replayed] == [e["event"] for e in local]
    assert [(e["id"], e["data"]) for e in replayed if "id" in e] == [(e["id"], e["data"]) for e in local_numbered]
    assert replayed[-1]["data"]["outputs"] == {"result": 42}

    resume_after = local_numbered[1]["id"]
    with httpx.stream(
        "GET", f"{b.url}/v1/runs/{run_id}/events", headers={**headers(b, "read"), "Last-Event-ID": resume_after}
    ) as response:
        rest = [e for e in sse(response) if "id" in e]
    assert [e["id"] for e in rest] == [e["id"] for e in local_numbered[2:]]


def test_either_replica_lists_the_runs_of_both(replicas: tuple[LiveServer, LiveServer]) -> None:
    a, b = replicas
    on_a = post(a, "/v1/workflows/double/runs", {"inputs": {"x": 1}}).json()["run_id"]
    on_b = post(b, "/v1/workflows/add/runs", {"inputs": {"a": 1, "b": 2}}).json()["run_id"]
    for server in (a, b):
        deadline = time.monotonic() + 10
        while True:
            listed = {run["run_id"]: run for run in get(server, "/v1/runs").json()["runs"]}
            if {on_a, on_b} <= set(listed) and listed[on_a]["status"] == listed[on_b]["status"] == "succeeded":
                break
            assert time.monotonic() < deadline, listed
            time.sleep(0.05)
        only_add = get(server, "/v1/runs", params={"workflow": "add"}).json()["runs"]
        assert [run["run_id"] for run in only_add] == [on_b]
    assert get(b, f"/v1/runs/{on_a}").json()["outputs"] == {"result": 2}
    assert get(a, f"/v1/runs/{on_b}").json()["outputs"] == {"result": 3}
    # Input goes to the replica that owns a run; the other says where.
    refused = post(b, f"/v1/runs/{on_a}/input", {"inputs": {"x": 2}})
    assert refused.status_code == 409, refused.text
    assert get(b, "/v1/runs/never-started").status_code == 404


def test_rate_limits_are_one_budget_across_replicas(tmp_path: Path, redis_url: str) -> None:
    limit = (0.05, 2.0)  # 2 requests at once, then one every 20 s
    a = start_server(tmp_path, ScriptedModel(), redis=redis_url, shared_rate_limit=limit)
    b = start_server(tmp_path, ScriptedModel(), redis=redis_url, shared_rate_limit=limit)
    key = headers(a, "admin")  # both servers know it: they share the database

    def ask(server: LiveServer, credentials: dict[str, str] = key) -> httpx.Response:
        return httpx.get(f"{server.url}/v1/workflows", headers=credentials, timeout=30)

    try:
        assert ask(a).status_code == 200
        assert ask(b).status_code == 200
        # The same key's third request, on either replica, is over the shared budget.
        for server in (a, b):
            refused = ask(server)
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["Retry-After"]) >= 1
        # Another key has a budget of its own.
        assert ask(b, headers(b, "read")).status_code == 200
    finally:
        b.close()
        a.close()


async def test_the_redis_token_bucket_is_atomic_under_concurrent_replicas(redis_url: str) -> None:
    from nanobrain.interfaces.http.run_bus import open_redis
    from nanobrain.interfaces.http.shared_limits import RedisRateLimits

    clients = [open_redis(redis_url) for _ in range(3)]
    try:
        limits = [RedisRateLimits(client, 0.001, burst=10, prefix=prefix) for client, prefix in clients]
        answers = await asyncio.gather(*(limits[i % 3].acquire("key:1") for i in range(60)))
        assert sum(answer is None for answer in answers) == 10
        assert all(answer is None or answer > 100 for answer in answers)
    finally:
        for client, _ in clients:
            await client.aclose()


async def test_a_running_run_of_a_replica_that_vanished_reads_as_interrupted(redis_url: str) -> None:
    from nanobrain.interfaces.http.run_bus import RunBus, open_redis

    client, prefix = open_redis(redis_url)
    try:
        bus = RunBus(client, prefix=prefix)
        view = {"run_id": "r1", "workflow": "nap", "mode": "background", "status": "running", "created": 1.0,
                "events": 3}  # fmt: skip
        await client.hset(f"{prefix}run:r1", mapping={"view": json.dumps(view), "owner": "gone-1", "status": "running"})
        seen = await bus.view("r1")
        assert seen is not None and seen["status"] == "interrupted"
        assert "gone-1" in seen["error"]["detail"]
        # Its stream ends instead of waiting forever for events that will not come.
        records = [record async for record in bus.records("r1", 0, heartbeat=0.1)]
        assert records == []
    finally:
        await client.aclose()


def test_runs_spread_over_two_redis_servers_and_either_replica_still_finds_each(
    tmp_path: Path, redis_url: str, second_redis: str
) -> None:
    import redis as redis_sync

    from nanobrain.infrastructure.data.kv import MemoryKeyValueStore
    from nanobrain.infrastructure.data.partitioned import PartitionedStore

    nodes = f"{redis_url},{second_redis}"  # the same order on every replica: placement follows it
    prefix = redis_url.split("prefix=")[1]
    a = start_server(tmp_path, ScriptedModel(), redis=nodes)
    b = start_server(tmp_path, ScriptedModel(), redis=nodes)
    direct = [redis_sync.Redis.from_url(url.split("?")[0]) for url in (redis_url, second_redis)]
    ring = PartitionedStore([MemoryKeyValueStore(), MemoryKeyValueStore()])  # placement only: names "0", "1"
    try:
        placed: dict[int, list[str]] = {0: [], 1: []}
        for _ in range(30):
            run_id = post(a, "/v1/workflows/double/runs", {"inputs": {"x": 2}}).json()["run_id"]
            placed[int(ring.node_for(run_id))].append(run_id)
            if placed[0] and placed[1]:
                break
        assert placed[0] and placed[1], placed
        for node, run_ids in placed.items():
            for run_id in run_ids:
                deadline = time.monotonic() + 10
                while not direct[node].exists(f"{prefix}run:{run_id}:events"):
                    assert time.monotonic() < deadline, f"run {run_id} never reached node {node}"
                    time.sleep(0.02)
                assert not direct[1 - node].exists(f"{prefix}run:{run_id}:events")
                assert not direct[1 - node].exists(f"{prefix}run:{run_id}")
                seen = get(b, f"/v1/runs/{run_id}").json()
                assert seen["status"] == "succeeded" and seen["outputs"] == {"result": 4}
                with httpx.stream("GET", f"{b.url}/v1/runs/{run_id}/events", headers=headers(b, "read")) as response:
                    kinds = [e["event"] for e in sse(response)]
                assert kinds[1] == "run_started" and kinds[-2:] == ["run_finished", "end"]

        # A live run on the second server is watched and cancelled from the other replica.
        while True:
            started = post(a, "/v1/workflows/nap/runs", {"inputs": {"seconds": 60}, "mode": "background"}).json()
            if ring.node_for(started["run_id"]) == "1":
                break
            post(a, f"/v1/runs/{started['run_id']}/cancel", {})
        watching = Reader(b, started["run_id"])
        watching.wait_until("step_started")
        assert post(b, f"/v1/runs/{started['run_id']}/cancel", {}).json()["status"] == "cancelled"
        watching.join()
        assert watching.events[-1]["data"]["status"] == "cancelled"
    finally:
        for client in direct:
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
            client.close()
        b.close()
        a.close()


async def test_without_redis_a_run_of_another_replica_is_a_503_not_a_404(unused_tcp_port: int) -> None:
    from nanobrain.interfaces.http.problems import ApiProblem
    from nanobrain.interfaces.http.run_bus import RunBus, open_redis
    from nanobrain.interfaces.http.runs import RunRegistry

    client, _ = open_redis(f"redis://:sekrit@127.0.0.1:{unused_tcp_port}/0")
    registry = RunRegistry(bus=RunBus(client))
    try:
        for lookup in (registry.find("r-elsewhere", {}), registry.views(limit=10)):
            with pytest.raises(ApiProblem) as refused:
                await lookup
            assert refused.value.status == 503 and "Redis did not answer" in refused.value.detail
            assert "sekrit" not in refused.value.detail
    finally:
        await client.aclose()
