"""Workflows and runs over HTTP: schemas, request/response and background runs, SSE in order and resumed,
long-lived runs that take input, cancelling, and clients that go away."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.interfaces.http.conftest import LiveServer, headers, start_server

from nanobrain.llm import ScriptedModel


def post(server: LiveServer, path: str, body: Any, role: str = "run", timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, headers=headers(server, role), timeout=timeout)


def get(server: LiveServer, path: str, role: str = "read", **options: Any) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", headers={**headers(server, role), **options.pop("headers", {})},
                     timeout=30, **options)  # fmt: skip


def sse(response: httpx.Response) -> list[dict[str, Any]]:
    """The events of an SSE response: id, event and parsed data; heartbeats as {"comment": ...}."""
    events, current = [], {}
    for line in response.iter_lines():
        if line.startswith(":"):
            events.append({"comment": line[1:].strip()})
        elif not line:
            if current:
                events.append(current)
            current = {}
        else:
            field, _, value = line.partition(": ")
            current[field] = json.loads(value) if field == "data" else value
    return events


def wait_for(server: LiveServer, run_id: str, *statuses: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = get(server, f"/v1/runs/{run_id}").json()
        if run["status"] in statuses or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def test_workflows_are_listed_with_their_schemas(server: LiveServer) -> None:
    listed = {w["name"]: w for w in get(server, "/v1/workflows").json()["workflows"]}
    assert {"chat", "double", "nap", "echo"} <= set(listed)
    assert "x" in listed["double"]["input_schema"]["properties"]
    assert "result" in listed["double"]["output_schema"]["properties"]
    assert {"message", "session"} <= set(listed["chat"]["input_schema"]["properties"])
    one = get(server, "/v1/workflows/double").json()
    assert one == listed["double"]
    missing = get(server, "/v1/workflows/nope")
    assert missing.status_code == 404 and missing.json()["errors"][0]["field"] == "name"


def test_a_run_answers_with_its_result(server: LiveServer) -> None:
    response = post(server, "/v1/workflows/double/runs", {"inputs": {"x": 21}})
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "succeeded" and run["outputs"] == {"result": 42} and run["owner"] == "run-key"
    assert get(server, f"/v1/runs/{run['run_id']}").json()["outputs"] == {"result": 42}


def test_bad_inputs_are_422_naming_each_input(server: LiveServer) -> None:
    for inputs, field in (({"x": 1, "y": 2}, "inputs.y"), ({}, "inputs.x"), ({"x": "many"}, "inputs.x")):
        response = post(server, "/v1/workflows/double/runs", {"inputs": inputs})
        assert response.status_code == 422, (inputs, response.text)
        assert response.json()["errors"][0]["field"] == field
    bad_mode = post(server, "/v1/workflows/double/runs", {"inputs": {"x": 1}, "mode": "someday"})
    assert bad_mode.status_code == 422 and bad_mode.json()["errors"][0]["field"] == "body.mode"


def test_failures_are_500_for_a_step_and_502_for_a_provider_without_secrets(server: LiveServer) -> None:
    failed = post(server, "/v1/workflows/explode/runs", {"inputs": {"x": 7}})
    assert failed.status_code == 500
    body = failed.json()
    assert "cannot handle 7" in body["detail"] and "ValueError" in body["detail"] and body["run_id"]
    assert get(server, f"/v1/runs/{body['run_id']}").json()["status"] == "failed"
    upstream = post(server, "/v1/workflows/upstream/runs", {"inputs": {"x": 1}})
    assert upstream.status_code == 502 and "upstream is down" in upstream.json()["detail"]
    assert "sk-secretsecret123" not in upstream.text


def test_a_background_run_answers_at_once_and_is_polled(server: LiveServer) -> None:
    response = post(server, "/v1/workflows/nap/runs", {"inputs": {"seconds": 0.3}, "mode": "background"})
    assert response.status_code == 202
    run = response.json()
    assert run["status"] == "running" and response.headers["location"] == f"/v1/runs/{run['run_id']}"
    done = wait_for(server, run["run_id"], "succeeded")
    assert done["status"] == "succeeded" and done["outputs"] == {"result": "rested"}
    assert run["run_id"] in [r["run_id"] for r in get(server, "/v1/runs").json()["runs"]]
    naps = get(server, "/v1/runs", params={"workflow": "nap", "status": "succeeded", "limit": 1}).json()["runs"]
    assert [r["run_id"] for r in naps] == [run["run_id"]]
    assert get(server, "/v1/runs", params={"status": "sleeping"}).status_code == 422


def test_a_streamed_run_sends_its_events_in_order(server: LiveServer) -> None:
    with httpx.stream(
        "POST", f"{server.url}/v1/workflows/double/stream", json={"inputs": {"x": 4}}, headers=headers(server)
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse(response)
    kinds = [e["event"] for e in events]
    assert kinds == [
        "stream_started", "run_started", "step_started", "output_set", "step_finished", "run_finished", "end",
    ]  # fmt: skip
    assert events[2]["data"]["firing"] == 1 and events[2]["data"]["step"] == "double"
    numbered = [int(e["id"]) for e in events if "id" in e]
    assert numbered == list(range(1, len(numbered) + 1))
    assert events[-2]["data"]["outputs"] == {"result": 8}
    assert events[-1]["data"]["status"] == "succeeded"
    assert all(e["data"]["run_id"] == events[0]["data"]["run_id"] for e in events[1:-1])


def test_events_resume_after_last_event_id_and_heartbeats_keep_quiet_streams_alive(server: LiveServer) -> None:
    # Long enough that the reader joins while the step still sleeps, even on a busy machine.
    run = post(server, "/v1/workflows/nap/runs", {"inputs": {"seconds": 2.5}, "mode": "background"}).json()
    with httpx.stream("GET", f"{server.url}/v1/runs/{run['run_id']}/events", headers=headers(server, "read")) as live:
        first = sse(live)
    assert {"comment": "heartbeat"} in first  # the step sleeps longer than the heartbeat interval
    numbered = [e for e in first if "id" in e]
    with httpx.stream(
        "GET", f"{server.url}/v1/runs/{run['run_id']}/events",
        headers={**headers(server, "read"), "Last-Event-ID": numbered[1]["id"]},
    ) as resumed:  # fmt: skip
        rest = [e for e in sse(resumed) if "id" in e]
    assert [e["id"] for e in rest] == [e["id"] for e in numbered[2:]]
    assert [e["data"] for e in rest] == [e["data"] for e in numbered[2:]]
    bad = get(server, f"/v1/runs/{run['run_id']}/events", headers={"Last-Event-ID": "soon"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "Last-Event-ID"


def test_a_long_lived_run_takes_input_until_cancelled(server: LiveServer) -> None:
    started = post(server, "/v1/workflows/echo/runs", {"inputs": {"x": 1}, "mode": "long_lived"})
    assert started.status_code == 201, started.text
    run_id = started.json()["run_id"]
    for value in (5, 8):
        answer = post(server, f"/v1/runs/{run_id}/input", {"inputs": {"x": value}, "wait": True})
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"] == {"last": value} and answer.json()["status"] == "waiting"
    bad = post(server, f"/v1/runs/{run_id}/input", {"inputs": {"x": "eight"}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "inputs.x"
    cancelled = post(server, f"/v1/runs/{run_id}/cancel", {})
    assert cancelled.json()["status"] == "cancelled"
    late = post(server, f"/v1/runs/{run_id}/input", {"inputs": {"x": 1}})
    assert late.status_code == 409
    not_long = post(server, "/v1/workflows/double/runs", {"inputs": {"x": 1}}).json()["run_id"]
    assert post(server, f"/v1/runs/{not_long}/input", {"inputs": {"x": 1}}).status_code == 409


def test_cancelling_a_background_run_stops_it(server: LiveServer) -> None:
    idle = server.task_count()
    run = post(server, "/v1/workflows/nap/runs", {"inputs": {"seconds": 60}, "mode": "background"}).json()
    assert post(server, f"/v1/runs/{run['run_id']}/cancel", {}).json()["status"] == "cancelled"
    assert get(server, f"/v1/runs/{run['run_id']}").json()["status"] == "cancelled"
    assert server.task_count() <= idle


def test_a_client_leaving_a_streamed_or_waited_run_cancels_it_and_nothing_leaks(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    idle = server.task_count()
    with httpx.stream(
        "POST", f"{server.url}/v1/workflows/nap/stream", json={"inputs": {"seconds": 60}}, headers=headers(server)
    ) as response:
        run_id = response.headers["x-run-id"]
        for line in response.iter_lines():
            if line.startswith("event: step_started"):
                break
    assert wait_for(server, run_id, "cancelled")["status"] == "cancelled"
    try:
        post(server, "/v1/workflows/nap/runs", {"inputs": {"seconds": 60}}, timeout=0.5)
    except httpx.ReadTimeout:
        pass  # the client gave up waiting
    runs = get(server, "/v1/runs").json()["runs"]
    waited = [r for r in runs if r["mode"] == "wait"][-1]
    assert wait_for(server, waited["run_id"], "cancelled")["status"] == "cancelled"
    deadline = time.monotonic() + 10
    while server.task_count() > idle and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.task_count() <= idle
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a client leaving is not a server error"


def test_the_chat_workflow_runs_through_the_generic_endpoint(server: LiveServer, model: ScriptedModel) -> None:
    model.add("Hi there.")
    response = post(server, "/v1/workflows/chat/runs", {"inputs": {"message": "hello", "session": "w-1"}})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"]["reply"] == "Hi there."
    assert response.json()["usage"]["completion_tokens"] == 2


async def test_the_registry_forgets_the_oldest_finished_runs_beyond_its_limit() -> None:
    import nanobrain as nb
    from nanobrain.interfaces.http.runs import RunRegistry

    registry = RunRegistry(keep_finished=2)
    workflow = nb.Workflow.sequence(nb.FunctionStep(lambda x: x, name="same"), name="same")
    runs = [registry.start(workflow, {"x": i}, mode="background", owner="test") for i in range(4)]
    for run in runs:
        await run.done.wait()
    assert list(registry.runs) == [runs[2].id, runs[3].id]
    assert runs[3].outputs == {"result": 3}


def test_a_durable_run_waits_for_input_across_a_restart_of_the_server(tmp_path: Path, model: ScriptedModel) -> None:
    first = start_server(tmp_path, model)
    try:
        started = post(first, "/v1/workflows/add/runs", {"inputs": {"a": 1}, "durable": True})
        assert started.status_code == 200, started.text
        run = started.json()
        assert run["status"] == "waiting" and run["durable"] and "input b" in run["waiting_for"]
        not_durable = post(first, "/v1/workflows/add/runs", {"inputs": {"a": 1}})
        assert not_durable.status_code == 422 and not_durable.json()["errors"][0]["field"] == "inputs.b"
    finally:
        first.close()
    second = start_server(tmp_path, model)  # a new process would see the same: the journal is in the database
    try:
        recalled = get(second, f"/v1/runs/{run['run_id']}").json()
        assert recalled["status"] == "waiting" and recalled["workflow"] == "add"
        finished = post(second, f"/v1/runs/{run['run_id']}/input", {"inputs": {"b": 2}, "wait": True})
        assert finished.status_code == 200, finished.text
        assert finished.json()["status"] == "succeeded" and finished.json()["outputs"] == {"result": 3}
        again = post(second, f"/v1/runs/{run['run_id']}/input", {"inputs": {"b": 5}})
        assert again.status_code == 409
    finally:
        second.close()
