"""A NanoBrain workflow served over A2A, driven by a2a-sdk's own 1.0 client, by fasta2a's 0.3
client (a second implementation), and by raw JSON-RPC for the protocol's error codes."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("a2a", reason="needs the a2a extra: pip install 'nanobrain[a2a]'")

from a2a.client import ClientConfig, create_client
from a2a.helpers.proto_helpers import get_data_parts, get_text_parts, new_data_part
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskState,
)

from nanobrain.core.durable import MemoryJournalStore
from nanobrain.core.schemas import input_schema
from nanobrain.protocols.a2a import a2a_app

from . import a2a_peer
from .conftest import served


def _patient_config() -> ClientConfig:
    """The SDK's default 5 s read timeout is too short for a 2-core machine running the whole suite."""
    return ClientConfig(streaming=False, httpx_client=httpx.AsyncClient(timeout=60))

A2A_1 = {"A2A-Version": "1.0"}


def user(*parts: Part, task_id: str = "", context_id: str = "") -> Message:
    return Message(
        role=Role.ROLE_USER, message_id=uuid.uuid4().hex, parts=list(parts), task_id=task_id, context_id=context_id
    )


def app_of(workflow: Any, **options: Any) -> Any:
    return lambda base_url: a2a_app(workflow, base_url=base_url, **options)


async def test_agent_card_is_generated_from_the_workflow() -> None:
    workflow = a2a_peer.shout()
    async with served(app_of(workflow)) as base, httpx.AsyncClient() as http:
        card = (await http.get(f"{base}/.well-known/agent-card.json")).json()
    assert card["name"] == "shout" and card["description"] == "Shout a text back, word by word"
    assert "url" not in card  # 1.0: the endpoint lives in supportedInterfaces
    assert card["supportedInterfaces"] == [
        {"url": f"{base}/a2a/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
    ]
    assert card["capabilities"]["streaming"] is True
    (extension,) = card["capabilities"]["extensions"]
    assert extension["params"]["input_schema"] == input_schema(workflow)
    assert [s["id"] for s in card["skills"]] == ["shout"]


async def test_sdk_client_streams_step_updates_token_chunks_and_the_outputs() -> None:
    async with served(app_of(a2a_peer.shout())) as base:
        client = await create_client(base)
        try:
            events = [e async for e in client.send_message(SendMessageRequest(message=user(Part(text="hello a2a"))))]
        finally:
            await client.close()
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "task" and kinds[-1] == "status_update"
    steps = [
        get_text_parts(list(e.status_update.status.message.parts))[0]
        for e in events
        if e.HasField("status_update") and e.status_update.status.message.parts
    ]
    assert steps == ["shout/speak started", "shout/speak finished"]
    chunks = [e.artifact_update for e in events if e.HasField("artifact_update")]
    tokens = [c for c in chunks if c.artifact.name == "tokens"]
    assert "".join(get_text_parts(list(c.artifact.parts))[0] for c in tokens) == "HELLO A2A "
    assert [c.append for c in tokens] == [False, True]
    (outputs,) = [c for c in chunks if c.artifact.name == "outputs"]
    assert get_text_parts(list(outputs.artifact.parts)) == ["HELLO A2A!"]
    assert get_data_parts(list(outputs.artifact.parts)) == [{"result": "HELLO A2A!"}]
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED


async def test_sdk_client_gets_lists_and_the_task_id_is_the_run_id() -> None:
    store = MemoryJournalStore()
    async with served(app_of(a2a_peer.shout(), store=store)) as base:
        client = await create_client(base, client_config=_patient_config())
        try:
            (reply,) = [e async for e in client.send_message(SendMessageRequest(message=user(Part(text="one"))))]
            task = reply.task
            assert task.status.state == TaskState.TASK_STATE_COMPLETED
            record = await store.get(task.id)
            assert record is not None and record.status == "finished" and record.workflow == "shout"
            fetched = await client.get_task(GetTaskRequest(id=task.id))
            assert fetched.id == task.id and fetched.status.state == TaskState.TASK_STATE_COMPLETED
            listed = await client.list_tasks(ListTasksRequest())
            assert task.id in [t.id for t in listed.tasks]
        finally:
            await client.close()


async def test_cancel_and_resubscribe_to_a_running_task() -> None:
    async with served(app_of(a2a_peer.slow())) as base:
        client = await create_client(base)
        watcher = await create_client(base)
        try:
            stream = client.send_message(SendMessageRequest(message=user(Part(text="abcdefghijklmnop"))))
            first = await anext(stream)
            task_id = first.task.id
            resubscribed = watcher.subscribe(SubscribeToTaskRequest(id=task_id))
            seen = await anext(resubscribed)  # the task as it is now, then its live updates
            assert seen.task.id == task_id
            live = await anext(resubscribed)
            assert live.WhichOneof("payload") in ("status_update", "artifact_update")
            canceled = await client.cancel_task(CancelTaskRequest(id=task_id))
            assert canceled.status.state == TaskState.TASK_STATE_CANCELED
            await stream.aclose()
            await resubscribed.aclose()
            fetched = await client.get_task(GetTaskRequest(id=task_id))
            assert fetched.status.state == TaskState.TASK_STATE_CANCELED
        finally:
            await client.close()
            await watcher.close()


async def test_a_run_waiting_for_input_is_input_required_and_the_next_message_continues_it() -> None:
    store = MemoryJournalStore()
    async with served(app_of(a2a_peer.two_inputs(), store=store)) as base:
        client = await create_client(base, client_config=_patient_config())
        try:
            (first,) = [
                e async for e in client.send_message(SendMessageRequest(message=user(new_data_part({"person": "Ada"}))))
            ]
            task = first.task
            assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
            assert get_text_parts(list(task.status.message.parts)) == ["waiting for input message"]
            record = await store.get(task.id)
            assert record is not None and record.status == "waiting"
            # Plain text goes to the input the run waits for.
            follow_up = user(Part(text="Good morning"), task_id=task.id, context_id=task.context_id)
            (second,) = [e async for e in client.send_message(SendMessageRequest(message=follow_up))]
            assert second.task.id == task.id
            assert second.task.status.state == TaskState.TASK_STATE_COMPLETED
            (outputs,) = second.task.artifacts
            assert get_data_parts(list(outputs.parts)) == [{"greeting": "Good morning, Ada"}]
        finally:
            await client.close()


async def test_failures_and_bad_inputs_end_the_task_with_a_reason() -> None:
    async with served(app_of(a2a_peer.failing())) as base:
        client = await create_client(base, client_config=_patient_config())
        try:
            (failed,) = [e async for e in client.send_message(SendMessageRequest(message=user(Part(text="x"))))]
            assert failed.task.status.state == TaskState.TASK_STATE_FAILED
            assert "cannot take 'x'" in get_text_parts(list(failed.task.status.message.parts))[0]
            (rejected,) = [
                e async for e in client.send_message(SendMessageRequest(message=user(new_data_part({"nope": 1}))))
            ]
            assert rejected.task.status.state == TaskState.TASK_STATE_REJECTED
            assert "has no input 'nope'" in get_text_parts(list(rejected.task.status.message.parts))[0]
        finally:
            await client.close()


async def test_fasta2a_speaks_0_3_to_the_same_endpoint() -> None:
    fasta2a = pytest.importorskip("fasta2a.client")
    async with served(app_of(a2a_peer.shout())) as base:
        old = fasta2a.A2AClient(f"{base}/a2a/")
        message = {
            "role": "user",
            "kind": "message",
            "message_id": uuid.uuid4().hex,
            "parts": [{"kind": "text", "text": "old client"}],
        }
        response = await old.send_message(message)  # type: ignore[arg-type]
        assert "error" not in response, response
        task = response["result"]
        assert task["status"]["state"] == "completed"
        texts = [p["text"] for a in task["artifacts"] for p in a["parts"] if p["kind"] == "text"]
        assert "OLD CLIENT!" in texts
        assert task["history"][0]["parts"] == [{"kind": "text", "text": "old client"}]
        # (fasta2a's get_task sends `"id": null`, which a2a-sdk's dispatcher refuses as -32600.)
        await old.http_client.aclose()


async def _rpc(http: httpx.AsyncClient, url: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    content = body if isinstance(body, (bytes, str)) else httpx.Request("POST", url, json=body).content
    response = await http.post(url, content=content, headers={"Content-Type": "application/json", **(headers or {})})
    return response.json()


async def test_protocol_errors_have_their_json_rpc_codes() -> None:
    async with served(app_of(a2a_peer.shout())) as base, httpx.AsyncClient() as http:
        url = f"{base}/a2a/"
        assert (await _rpc(http, url, b"{not json", A2A_1))["error"]["code"] == -32700
        unknown = await _rpc(http, url, {"jsonrpc": "2.0", "id": 1, "method": "Nope", "params": {}}, A2A_1)
        assert unknown["error"]["code"] == -32601
        missing = await _rpc(http, url, {"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": {"id": "x"}}, A2A_1)
        assert missing["error"]["code"] == -32001
        bad = await _rpc(http, url, {"jsonrpc": "2.0", "id": 3, "method": "SendMessage", "params": {"x": 1}}, A2A_1)
        assert bad["error"]["code"] in (-32602, -32600)
        huge = {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "SendMessage",
            "params": {"message": {"role": "ROLE_USER", "messageId": "m", "parts": [{"text": "x" * 12_000_000}]}},
        }
        too_big = await _rpc(http, url, huge, A2A_1)
        assert too_big["error"]["code"] == -32600 and "too large" in too_big["error"]["message"].lower()


async def test_concurrent_messages_are_separate_runs() -> None:
    async with served(app_of(a2a_peer.shout())) as base:
        client = await create_client(base, client_config=_patient_config())
        try:

            async def send(text: str) -> Any:
                (reply,) = [e async for e in client.send_message(SendMessageRequest(message=user(Part(text=text))))]
                return reply.task

            tasks = await asyncio.gather(*(send(f"n{i}") for i in range(5)))
            assert len({t.id for t in tasks}) == 5
            outputs = [a for t in tasks for a in t.artifacts if a.name == "outputs"]
            results = sorted(get_data_parts(list(a.parts))[0]["result"] for a in outputs)
            assert results == [f"N{i}!" for i in range(5)]
        finally:
            await client.close()


async def test_a_waiting_task_survives_a_server_restart(tmp_path: Path) -> None:
    """Task id = run id: with the journal and the task store in a database, a new server process
    continues the task that an old one left waiting for input."""
    from a2a.server.tasks import DatabaseTaskStore
    from sqlalchemy.ext.asyncio import create_async_engine

    from nanobrain.infrastructure.data.journal import SqlJournalStore

    url = f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}"

    def app(base: str, journal: SqlJournalStore, engine: Any) -> Any:
        return a2a_app(a2a_peer.two_inputs(), base_url=base, store=journal, task_store=DatabaseTaskStore(engine))

    journal, engine = SqlJournalStore(url), create_async_engine(url)
    async with served(lambda base: app(base, journal, engine)) as base:
        client = await create_client(base, client_config=_patient_config())
        (first,) = [
            e async for e in client.send_message(SendMessageRequest(message=user(new_data_part({"person": "Bo"}))))
        ]
        await client.close()
    task = first.task
    assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    await journal.aclose()
    await engine.dispose()

    journal, engine = SqlJournalStore(url), create_async_engine(url)  # "the next process"
    try:
        async with served(lambda base: app(base, journal, engine)) as base:
            client = await create_client(base, client_config=_patient_config())
            follow_up = user(Part(text="Welcome back"), task_id=task.id, context_id=task.context_id)
            (second,) = [e async for e in client.send_message(SendMessageRequest(message=follow_up))]
            await client.close()
        assert second.task.status.state == TaskState.TASK_STATE_COMPLETED
        outputs = [a for a in second.task.artifacts if a.name == "outputs"]
        assert get_data_parts(list(outputs[0].parts)) == [{"greeting": "Welcome back, Bo"}]
    finally:
        await journal.aclose()
        await engine.dispose()
