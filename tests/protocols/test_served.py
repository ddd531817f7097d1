"""A2A and MCP mounted in `nanobrain serve`'s app: public agent cards, the server's keys and roles
on the protocol endpoints, the official clients through them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("a2a")
pytest.importorskip("fastapi")

from a2a.client import ClientConfig, create_client
from a2a.helpers.proto_helpers import get_data_parts, new_data_part
from a2a.types import Message, Role, SendMessageRequest, TaskState
from mcp import Client
from tests.interfaces.http.conftest import LiveServer, start_server

from nanobrain.llm import ScriptedModel


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path, ScriptedModel(chunk_size=4))
    yield server
    server.close()


def bearer(live: LiveServer, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.keys[role]}"}  # type: ignore[attr-defined]


def test_agent_cards_are_public_and_advertise_the_bearer_scheme(live: LiveServer) -> None:
    primary = httpx.get(f"{live.url}/.well-known/agent-card.json")
    assert primary.status_code == 200
    card = primary.json()
    assert card["supportedInterfaces"][0]["url"] == f"{live.url}/a2a/{card['name']}/"
    assert card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"] == "Bearer"
    double = httpx.get(f"{live.url}/a2a/double/.well-known/agent-card.json").json()
    assert double["name"] == "double"
    assert httpx.get(f"{live.url}/a2a/nope/.well-known/agent-card.json").status_code == 404


def test_the_a2a_endpoint_needs_a_key_with_the_run_role(live: LiveServer) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}
    assert httpx.post(f"{live.url}/a2a/double/", json=body).status_code == 401
    assert httpx.post(f"{live.url}/a2a/double/", json=body, headers=bearer(live, "read")).status_code == 403
    allowed = httpx.post(f"{live.url}/a2a/double/", json=body, headers={**bearer(live, "run"), "A2A-Version": "1.0"})
    assert allowed.status_code == 200 and allowed.json()["error"]["code"] == -32001


async def test_the_sdk_client_runs_a_served_workflow_with_a_key(live: LiveServer) -> None:
    async with httpx.AsyncClient(headers=bearer(live, "run"), timeout=30) as http:
        client = await create_client(
            f"{live.url}/a2a/double", client_config=ClientConfig(streaming=True, httpx_client=http)
        )
        message = Message(role=Role.ROLE_USER, message_id=uuid.uuid4().hex, parts=[new_data_part({"x": 21})])
        events = [e async for e in client.send_message(SendMessageRequest(message=message))]
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    (outputs,) = [e.artifact_update.artifact for e in events if e.HasField("artifact_update")]
    assert get_data_parts(list(outputs.parts)) == [{"result": 42}]


async def test_mcp_endpoint_serves_the_workflows_as_tools_behind_auth(live: LiveServer) -> None:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async with httpx.AsyncClient() as plain:
        refused = await plain.post(f"{live.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert refused.status_code == 401
        # The SDK's own refusals come out as problem documents like the server's other errors.
        wrong = await plain.post(f"{live.url}/mcp", content=b"x", headers=bearer(live, "run"))
        assert 400 <= wrong.status_code < 500 and wrong.headers["content-type"] == "application/problem+json"
        assert wrong.json()["status"] == wrong.status_code and wrong.json()["detail"]
    async with (
        httpx2.AsyncClient(headers=bearer(live, "run"), timeout=30) as http,
        Client(streamable_http_client(f"{live.url}/mcp", http_client=http)) as client,
    ):
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"double", "add", "nap"} <= names
        result = await client.call_tool("add", {"a": 2, "b": 40})
        assert not result.is_error and result.structured_content == {"result": 42}


async def test_remote_agent_sends_its_token_and_a_missing_one_is_a_clear_error(live: LiveServer) -> None:
    from nanobrain.protocols.a2a.client import RemoteAgent
    from nanobrain.protocols.errors import ProtocolError

    remote = RemoteAgent(f"{live.url}/a2a/add", token=live.keys["run"])  # type: ignore[attr-defined]
    try:
        assert await remote.send({"a": 1, "b": 2}) == {"result": 3}
    finally:
        await remote.aclose()
    anonymous = RemoteAgent(f"{live.url}/a2a/add")
    try:
        with pytest.raises(ProtocolError, match="401"):
            await anonymous.send({"a": 1, "b": 2})
    finally:
        await anonymous.aclose()
