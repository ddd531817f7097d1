"""Serving the UI: the page and its assets without a key, with a Content-Security-Policy, nothing
from elsewhere; the graph endpoint the run view draws; session titles for the session list."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from tests.interfaces.http.conftest import LiveServer, headers
from tests.interfaces.web.conftest import start_ui_server, ui_workflows

from nanobrain.interfaces.http import create_app
from nanobrain.interfaces.web import CONTENT_SECURITY_POLICY, STATIC_DIR
from nanobrain.llm import ScriptedModel


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    model = ScriptedModel(["Hi.", "Hello."])
    live = start_ui_server(tmp_path_factory.mktemp("serving") / "s.db", model, workflows=ui_workflows())
    yield live
    live.close()


def test_the_page_and_its_assets_are_served_without_a_key_with_a_csp(server: LiveServer) -> None:
    page = httpx.get(server.url + "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert page.headers["x-content-type-options"] == "nosniff"
    assets = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
    assert assets and all(a.startswith("/ui/") for a in assets), assets
    for asset in (*assets, "/ui/chat.js", "/ui/runs.js", "/ui/markdown.js"):
        found = httpx.get(server.url + asset)
        assert found.status_code == 200, asset
        assert found.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    script = httpx.get(server.url + "/ui/app.js")
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert httpx.get(server.url + "/ui/missing.js").status_code == 404
    # The data still needs a key.
    assert httpx.get(server.url + "/v1/workflows").status_code == 401


def test_the_assets_load_nothing_from_elsewhere_and_never_write_html() -> None:
    files = sorted(STATIC_DIR.iterdir())
    assert {f.name for f in files} >= {"index.html", "app.js", "style.css", "chat.js", "runs.js", "workflows.js"}
    for path in files:
        text = path.read_text()
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), path.name
        if path.suffix == ".js":
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
                assert sink not in text, (path.name, sink)


def test_the_ui_can_be_left_out() -> None:
    assert "/" in {getattr(r, "path", None) for r in create_app().routes}
    assert "/" not in {getattr(r, "path", None) for r in create_app(ui=False).routes}


def test_a_workflow_graph_lists_inputs_steps_outputs_and_links(server: LiveServer) -> None:
    found = httpx.get(f"{server.url}/v1/workflows/pipeline/graph", headers=headers(server, "read"))
    assert found.status_code == 200
    graph = found.json()
    assert [(n["id"], n["kind"]) for n in graph["nodes"]] == [
        ("inputs.topic", "input"), ("inputs.seconds", "input"), ("fetch_text", "step"), ("summarize", "step"),
        ("outputs.result", "output"),
    ]
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    assert edges == {
        ("inputs.topic", "fetch_text"), ("inputs.seconds", "fetch_text"), ("fetch_text", "summarize"),
        ("summarize", "outputs.result"),
    }
    assert {e["label"] for e in graph["edges"]} >= {"result → text"}
    missing = httpx.get(f"{server.url}/v1/workflows/nope/graph", headers=headers(server, "read"))
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_a_new_chat_session_is_titled_after_its_first_message(server: LiveServer) -> None:
    long = "Plan   a trip\nto the mountains " + "with many details " * 10
    for text in ("Short question?", long):
        body = {"model": "chat", "messages": [{"role": "user", "content": text}]}
        answered = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers(server, "run"))
        assert answered.status_code == 200, answered.text
    sessions = httpx.get(f"{server.url}/v1/sessions", headers=headers(server, "read")).json()["sessions"]
    titles = [s["title"] for s in sessions]
    assert "Short question?" in titles
    [shortened] = [t for t in titles if t.startswith("Plan a trip to the mountains")]
    assert len(shortened) == 60 and shortened.endswith("…")


def test_without_chromium_the_browser_tests_say_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.interfaces.web import conftest as web

    monkeypatch.setattr(web, "CHROMIUM", "/nonexistent/chromium")
    reason = web.chromium_missing()
    assert reason is not None and "/nonexistent/chromium" in reason and "apt-get install -y chromium" in reason
