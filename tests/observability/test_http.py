"""`/metrics` on a real served app (uvicorn on 127.0.0.1): a chat and workflow runs show up, auth
applies, requests are counted by route and status; a caller's `traceparent` continues into the
server's run spans, which reach an OTLP receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the HTTP server needs the `server` extra")
pytest.importorskip("prometheus_client")

import httpx
from tests.interfaces.http.conftest import LiveServer, headers, start_server
from tests.observability.test_metrics import parse, value
from tests.observability.test_tracing import _Receiver

from nanobrain.llm import ScriptedModel


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LiveServer, ScriptedModel]]:
    model = ScriptedModel(chunk_size=4, model="tiny")
    live = start_server(tmp_path, model)
    yield live, model
    live.close()


def scrape(server: LiveServer) -> dict:  # type: ignore[type-arg]
    response = httpx.get(f"{server.url}/metrics", headers=headers(server, "read"), timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def test_a_served_chat_shows_runs_steps_model_latency_and_tokens(served: tuple[LiveServer, ScriptedModel]) -> None:
    server, model = served
    before = scrape(server)
    model.add("Paris is the capital of France.")
    answer = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "Capital of France?"}]},
        headers=headers(server, "run"),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    ran = httpx.post(
        f"{server.url}/v1/workflows/double/runs", json={"inputs": {"x": 21}}, headers=headers(server, "run"), timeout=30
    )
    assert ran.status_code in (200, 201), ran.text
    failed = httpx.post(
        f"{server.url}/v1/workflows/explode/runs", json={"inputs": {"x": 1}}, headers=headers(server, "run"), timeout=30
    )
    assert failed.status_code >= 400
    after = scrape(server)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    chat_runs = [
        (dict(pairs)["workflow"], v)
        for (name, pairs), v in after.items()
        if name == "nanobrain_runs_finished_total" and v > value(before, name, **dict(pairs))
    ]
    assert any(workflow.startswith("chat") for workflow, _ in chat_runs), chat_runs
    assert grew("nanobrain_runs_finished_total", workflow="double") == 1
    assert grew("nanobrain_runs_failed_total", workflow="explode", error="ValueError") == 1
    assert grew("nanobrain_step_duration_seconds_count", workflow="double", step="double") == 1
    assert grew("nanobrain_llm_calls_total", provider="scripted", model="tiny") == 1
    assert grew("nanobrain_llm_call_duration_seconds_count", provider="scripted", model="tiny") == 1
    assert grew("nanobrain_llm_tokens_total", provider="scripted", model="tiny", kind="completion") == 6
    # Requests by route template and status (the scrape itself counts too).
    route = "/v1/workflows/{name}/runs"
    statuses = {
        dict(pairs)["status"]
        for (name, pairs) in after
        if name == "nanobrain_http_requests_total" and dict(pairs)["route"] == route
    }
    assert str(ran.status_code) in statuses and str(failed.status_code) in statuses
    assert value(after, "nanobrain_http_requests_total", method="GET", route="/metrics", status="200") >= 1
    # Auth applies to /metrics as to every route but the probes.
    assert httpx.get(f"{server.url}/metrics", timeout=30).status_code == 401


def test_ready_includes_the_health_monitor(served: tuple[LiveServer, ScriptedModel]) -> None:
    server, _ = served
    ready = httpx.get(f"{server.url}/ready", timeout=30)
    assert ready.status_code == 200, ready.text
    assert {"accepting", "workflows"} <= set(ready.json()["checks"])


def test_a_callers_trace_continues_into_the_servers_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import http.server
    import threading

    from nanobrain.observability.tracing import active_tracing, disable_tracing

    _Receiver.requests = []
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.server_port}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "nanobrain-server")
    server = start_server(tmp_path, ScriptedModel(["Paris."], model="tiny"))
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    chat_trace = "0af7651916cd43dd8448eb211c80319c"
    try:
        ran = httpx.post(
            f"{server.url}/v1/workflows/double/runs",
            json={"inputs": {"x": 2}},
            headers={**headers(server, "run"), "traceparent": f"00-{trace_id}-{parent_id}-01"},
            timeout=30,
        )
        assert ran.status_code in (200, 201), ran.text
        answer = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": "Capital of France?"}]},
            headers={**headers(server, "run"), "traceparent": f"00-{chat_trace}-{parent_id}-01"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        sink = active_tracing()
        assert sink is not None
        assert sink.provider.force_flush(10_000)
    finally:
        server.close()
        disable_tracing()
        receiver.shutdown()
        receiver.server_close()
    spans = [s for _, m in _Receiver.requests for r in m.resource_spans for sc in r.scope_spans for s in sc.spans]
    run = next(s for s in spans if s.name == "run double")
    assert run.trace_id.hex() == trace_id
    assert run.parent_span_id.hex() == parent_id
    step = next(s for s in spans if s.name == "step double")
    assert step.trace_id.hex() == trace_id and step.parent_span_id == run.span_id
    # The served chat: its run, its steps and the model call, all in the caller's trace.
    chat = [s for s in spans if s.trace_id.hex() == chat_trace]
    by_id = {s.span_id: s for s in chat}
    model_call = next(s for s in chat if s.name == "chat tiny")
    ancestors = []
    span = model_call
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        ancestors.append(span.name)
    assert ancestors[0].startswith("step ") and ancestors[-1].startswith("run chat"), ancestors
    assert span.parent_span_id.hex() == parent_id


def test_a_served_app_evaluates_the_alert_rules_nanobrain_alerts_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from tests.observability.test_alerts import Webhook

    hook = Webhook()
    rules = tmp_path / "alerts.yaml"
    rules.write_text(
        f"webhook: {hook.url}\nalerts:\n  - {{name: explosions, when: error_rate, above: 0, workflow: explode}}\n"
    )
    monkeypatch.setenv("NANOBRAIN_ALERTS", str(rules))
    monkeypatch.setenv("NANOBRAIN_ALERTS_EVERY", "0.1")
    server = start_server(tmp_path, ScriptedModel(model="tiny"))
    try:
        failed = httpx.post(
            f"{server.url}/v1/workflows/explode/runs",
            json={"inputs": {"x": 1}},
            headers=headers(server, "run"),
            timeout=30,
        )
        assert failed.status_code >= 400
        deadline = time.monotonic() + 20
        while not hook.received and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # several more evaluations: still one notification
    finally:
        server.close()
        hook.server.shutdown()
        hook.server.server_close()
    assert [(b["alert"], b["state"]) for b in hook.received] == [("explosions", "firing")]


def test_a_bad_alert_file_stops_the_app_being_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nanobrain as nb
    from nanobrain.interfaces.http import create_app

    rules = tmp_path / "alerts.yaml"
    rules.write_text("alerts:\n  - {name: x, when: sometimes}\n")
    monkeypatch.setenv("NANOBRAIN_ALERTS", str(rules))
    with pytest.raises(nb.ConfigError, match=r"alerts\[0\]\.when"):
        create_app()


def test_the_pools_of_served_workflows_report_at_each_scrape() -> None:
    from prometheus_client import REGISTRY, generate_latest
    from tests.observability.workloads import parallel_workflow

    from nanobrain.interfaces.http import create_app

    workflow = parallel_workflow()
    app = create_app(workflows=[workflow])
    pool = workflow.steps["fan"].pool  # type: ignore[attr-defined]
    pool.set_healthy("p0", False)
    samples = parse(generate_latest(REGISTRY).decode())
    assert value(samples, "nanobrain_pool_processors", pool="fan") == 2
    assert value(samples, "nanobrain_pool_processors_healthy", pool="fan") == 1
    assert value(samples, "nanobrain_pool_queue_depth", pool="fan") == 0
    assert app.state.nanobrain.health.names == ["pool fan"]
