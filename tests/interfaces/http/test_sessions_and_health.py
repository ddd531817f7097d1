"""Sessions over REST (list, read, export in every format, delete), health and readiness, problem bodies."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.interfaces.http.conftest import LiveServer, headers, start_server

from nanobrain.interfaces.http import ServerConfig
from nanobrain.llm import ScriptedModel


def chat(server: LiveServer, text: str, session: str) -> None:
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        headers={**headers(server, "run"), "X-Session-Id": session},
        json={"model": "chat", "messages": [{"role": "user", "content": text}]},
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def talked(server: LiveServer, model: ScriptedModel) -> LiveServer:
    model.add("Hello!", "Fine, thanks.")
    chat(server, "Hi", "s-one")
    chat(server, "How are you?", "s-one")
    return server


def test_sessions_are_listed_and_read_with_their_messages(talked: LiveServer) -> None:
    listed = httpx.get(f"{talked.url}/v1/sessions", headers=headers(talked, "read")).json()["sessions"]
    assert [s["id"] for s in listed] == ["s-one"] and listed[0]["message_count"] == 4
    session = httpx.get(f"{talked.url}/v1/sessions/s-one", headers=headers(talked, "read")).json()
    assert [(m["seq"], m["role"], m["content"]) for m in session["messages"]] == [
        (1, "user", "Hi"), (2, "assistant", "Hello!"), (3, "user", "How are you?"), (4, "assistant", "Fine, thanks."),
    ]  # fmt: skip
    page = httpx.get(
        f"{talked.url}/v1/sessions/s-one", params={"after_seq": 2, "limit": 1}, headers=headers(talked, "read")
    ).json()
    assert [m["seq"] for m in page["messages"]] == [3]


def test_export_in_each_of_the_persistence_formats(talked: LiveServer) -> None:
    def export(format: str) -> httpx.Response:
        response = httpx.get(
            f"{talked.url}/v1/sessions/s-one/export", params={"format": format}, headers=headers(talked, "read")
        )
        assert response.status_code == 200, response.text
        assert "attachment" in response.headers["content-disposition"]
        return response

    document = export("json").json()
    assert document["format"] == "nanobrain-history"
    assert [m["content"] for m in document["sessions"][0]["messages"]][-1] == "Fine, thanks."
    lines = [json.loads(line) for line in export("jsonl").text.splitlines()]
    assert [line["type"] for line in lines] == ["header", "session", "message", "message", "message", "message"]
    rows = list(csv.DictReader(io.StringIO(export("csv").text)))
    assert [r["role"] for r in rows] == ["user", "assistant", "user", "assistant"]
    markdown = export("markdown")
    assert markdown.headers["content-type"].startswith("text/markdown") and "Fine, thanks." in markdown.text
    bad = httpx.get(f"{talked.url}/v1/sessions/s-one/export", params={"format": "xml"}, headers=headers(talked))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.format"


def test_delete_needs_admin_and_removes_the_session(talked: LiveServer) -> None:
    url = f"{talked.url}/v1/sessions/s-one"
    assert httpx.delete(url, headers=headers(talked, "run")).status_code == 403
    assert httpx.delete(url, headers=headers(talked, "admin")).status_code == 204
    missing = httpx.get(url, headers=headers(talked, "read"))
    assert missing.status_code == 404 and missing.json()["errors"][0]["field"] == "session_id"
    assert httpx.delete(url, headers=headers(talked, "admin")).status_code == 404


def test_reading_is_recorded_in_the_audit_log(talked: LiveServer, tmp_path: Path) -> None:
    httpx.get(f"{talked.url}/v1/sessions/s-one", headers=headers(talked, "read"))
    entries = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert {"who": "run-key", "action": "chat", "target": "session:s-one"}.items() <= entries[0].items()
    assert {"who": "read-key", "action": "read", "target": "session:s-one"}.items() <= entries[-1].items()
    assert (tmp_path / "audit.log").stat().st_mode & 0o077 == 0


def ready_once_settled(server: LiveServer) -> httpx.Response:
    """/ready once the model has finished loading (or failed to)."""
    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(f"{server.url}/ready")
        if "still loading" not in response.text or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_health_needs_no_key_and_ready_reports_each_check(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    ready = ready_once_settled(server)
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["database"]["ok"] and checks["model"] == {"ok": True, "detail": "scripted:scripted"}
    assert checks["workflows"]["ok"]


def test_ready_is_503_while_the_model_cannot_be_loaded(tmp_path: Path) -> None:
    class Broken(ScriptedModel):
        async def load(self) -> None:
            raise RuntimeError("model file is corrupt")

    live = start_server(tmp_path, Broken())
    try:
        ready = ready_once_settled(live)
        assert ready.status_code == 503
        assert ready.headers["content-type"].startswith("application/problem+json")
        assert "model" in ready.json()["detail"] and "corrupt" in ready.json()["checks"]["model"]["detail"]
    finally:
        live.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("GET", "/v1/nowhere", None, 404, None),
        ("DELETE", "/v1/models", None, 405, None),
        ("POST", "/v1/chat/completions", b"{not json", 400, None),
        ("POST", "/v1/chat/completions", {"model": "chat"}, 422, "body.messages"),
        ("POST", "/v1/chat/completions", {"model": "chat", "messages": [], "n": 1}, 422, "body.messages"),
        ("POST", "/v1/chat/completions", {"model": "chat", "messages": [{"role": "user", "content": "x"}], "n": 3},
         422, "body.n"),
        ("GET", "/v1/sessions", {"limit": "lots"}, 422, "query.limit"),
    ],
)
def test_client_mistakes_are_problem_json_naming_the_field(
    server: LiveServer, method: str, path: str, body: Any, status: int, field: str | None
) -> None:
    options: dict[str, Any] = {}
    if isinstance(body, bytes):
        options["content"] = body
        options["headers"] = {"content-type": "application/json"}
    elif method == "GET" and body is not None:
        options["params"] = body
    elif body is not None:
        options["json"] = body
    extra_headers = options.pop("headers", {})
    response = httpx.request(method, f"{server.url}{path}", **options, headers={**headers(server), **extra_headers})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    if field is not None:
        assert problem["errors"][0]["field"] == field


def test_a_body_over_the_limit_is_refused_with_413(server: LiveServer) -> None:
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        headers=headers(server),
        json={"model": "chat", "messages": [{"role": "user", "content": "x" * (2 << 20)}]},
    )
    assert response.status_code == 413
    assert "1,048,576" in response.json()["detail"]

    def chunks() -> Any:  # no Content-Length: the limit applies while reading
        yield b'{"model": "chat", "messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}]}'

    streamed = httpx.post(
        f"{server.url}/v1/chat/completions",
        headers={**headers(server), "content-type": "application/json"},
        content=chunks(),
    )
    assert streamed.status_code == 413


def test_cors_is_off_by_default_and_allows_only_configured_origins(server: LiveServer, tmp_path: Path) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    closed = httpx.options(f"{server.url}/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    live = start_server(tmp_path / "cors", ScriptedModel(), config=ServerConfig(cors_origins=["https://app.example"]))
    try:
        allowed = httpx.options(f"{live.url}/v1/chat/completions", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.options(
            f"{live.url}/v1/chat/completions", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"
    finally:
        live.close()
