"""The chat in a real browser: login, streamed answers rendered safely, stop, sessions, export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.interfaces.http.conftest import LiveServer
from tests.interfaces.web.conftest import PHONE, login, screenshot, start_ui_server, wait_until

from nanobrain.llm import ScriptedModel

MALICIOUS = (
    "Here is <script>window.__pwned = 1</script> and <img src=x onerror=\"window.__pwned = 2\"> "
    "and [a link](javascript:window.__pwned=3).\n\n```html\n<b onclick=\"x()\">bold?</b>\n```\n\n- **one**\n- `two`"
)


@pytest.fixture(scope="module")
def model() -> ScriptedModel:
    return ScriptedModel(chunk_size=4)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model: ScriptedModel) -> Iterator[LiveServer]:
    live = start_ui_server(tmp_path_factory.mktemp("chat") / "chat.db", model)
    yield live
    live.close()


def messages(server: LiveServer, session: str) -> list[dict[str, Any]]:
    key = server.keys["admin"]  # type: ignore[attr-defined]
    found = httpx.get(f"{server.url}/v1/sessions/{session}", headers={"Authorization": f"Bearer {key}"})
    found.raise_for_status()
    return list(found.json()["messages"])


def current_session(page: Any) -> str:
    return str(page.evaluate("location.hash")).rsplit("/", 1)[1]


def test_login_rejects_a_wrong_key_then_accepts_a_right_one(server: LiveServer, page: Any) -> None:
    page.goto(server.url + "/")
    page.wait_for_selector("form.login")
    page.fill("#api-key", "nb_0000000000000000_" + "x" * 43)
    page.click("form.login button")
    page.wait_for_selector("#login-error:has-text('not valid')")
    assert page.evaluate("sessionStorage.getItem('nanobrain.apiKey')") is None
    login(page, server)
    page.wait_for_selector("#prompt")
    page.wait_for_selector("#model:has-text('model: chat · scripted')")  # the workflow and its model
    # The key is kept for the tab: a reload does not ask again.
    page.reload()
    page.wait_for_selector("#prompt")
    assert page.query_selector("form.login") is None


def test_a_key_without_the_role_sees_a_clear_message(server: LiveServer, page: Any) -> None:
    login(page, server, role="read")
    page.fill("#prompt", "hello")
    page.keyboard.press("Enter")
    error = page.wait_for_selector(".message.assistant .error")
    assert "needs role 'run'" in error.inner_text()
    assert "Log in with a key that has that role" in error.inner_text()


def test_streamed_answer_is_rendered_as_text_never_as_html(
    server: LiveServer, model: ScriptedModel, page: Any, tmp_path: Path
) -> None:
    model.add(MALICIOUS)
    model.delay = 0.03  # per chunk: the answer visibly streams in
    try:
        login(page, server)
        page.fill("#prompt", "Show me <script>alert(1)</script>")
        page.keyboard.press("Enter")
        page.wait_for_selector(".message.assistant.streaming .body p")  # text arrived, answer not finished
        partial = page.inner_text(".message.assistant .body")
        page.wait_for_selector(".message.assistant[data-done=true]")
    finally:
        model.delay = 0.0
    answer = page.query_selector(".message.assistant .body")
    assert len(partial) < len(answer.inner_text())
    text = answer.inner_text()
    assert "<script>window.__pwned = 1</script>" in text
    assert '<img src=x onerror="window.__pwned = 2">' in text
    assert answer.query_selector("script, img, b, [onclick], [onerror]") is None
    assert answer.query_selector("a") is None  # a javascript: link stays text
    assert answer.query_selector("pre code[data-lang=html]").inner_text() == '<b onclick="x()">bold?</b>'
    assert answer.query_selector("li strong").inner_text() == "one"
    assert page.evaluate("window.__pwned") is None
    # The user's own message, echoed and stored, is text too.
    assert page.inner_text(".message.user .body") == "Show me <script>alert(1)</script>"
    # The history shown on resume is rendered the same safe way.
    page.reload()
    page.wait_for_selector(".message.assistant .body pre")
    assert page.query_selector(".messages script, .messages img") is None
    assert page.evaluate("window.__pwned") is None
    assert page.errors == []  # type: ignore[attr-defined]
    screenshot(page, "chat", tmp_path)


def test_stop_keeps_the_partial_answer_marked_interrupted(
    server: LiveServer, model: ScriptedModel, page: Any
) -> None:
    model.add("word " * 400)
    model.delay = 0.05
    try:
        login(page, server)
        page.fill("#prompt", "Tell me a long story")
        page.keyboard.press("Enter")
        wait_until(page, "document.querySelector('.message.assistant .body').innerText.length > 40")
        page.keyboard.press("Escape")  # Esc stops, as the Stop button does
        page.wait_for_selector(".message.assistant.interrupted .badge")
        shown = page.inner_text(".message.assistant .body").strip()
    finally:
        model.delay = 0.0
    assert 0 < len(shown) < len("word " * 400)
    session = current_session(page)
    # The server kept what was said, marked interrupted (it stores the text so far as it streams).
    page.wait_for_timeout(300)
    stored = messages(server, session)
    assert [m["role"] for m in stored][-2:] == ["user", "assistant"]
    assert stored[-1]["metadata"].get("interrupted") is True
    assert stored[-1]["content"].startswith("word word")
    page.reload()
    page.wait_for_selector(".message.assistant.interrupted .badge")
    # The Stop button does the same, and the conversation goes on afterwards.
    model.add("more " * 400, "Back again.")
    model.delay = 0.05
    try:
        page.fill("#prompt", "Another long one")
        page.keyboard.press("Enter")
        page.wait_for_selector("#stop:visible")
        wait_until(page, "document.querySelectorAll('.message.assistant')[1].innerText.length > 30")
        page.click("#stop")
        page.wait_for_selector(".message.assistant.interrupted >> nth=1")
    finally:
        model.delay = 0.0
    assert page.is_hidden("#stop") and page.is_visible("#send")
    page.fill("#prompt", "Still there?")
    page.keyboard.press("Enter")
    page.wait_for_selector(".message.assistant:has-text('Back again.')")
    assert current_session(page) == session


def test_new_session_list_resume_and_export(server: LiveServer, model: ScriptedModel, page: Any) -> None:
    model.add("Hello Ada.", "Hi again.", "You said your name is Ada.")
    login(page, server)
    page.fill("#prompt", "My name is Ada")
    page.keyboard.press("Enter")
    page.wait_for_selector(".message.assistant[data-done=true]")
    first = current_session(page)
    page.click("#new-chat")
    page.wait_for_selector(".messages .empty")
    # Shift+Enter is a new line, Enter sends.
    page.fill("#prompt", "line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    assert page.input_value("#prompt") == "line one\nline two"
    page.keyboard.press("Enter")
    page.wait_for_selector(".message.assistant[data-done=true]")
    second = current_session(page)
    assert second != first
    assert page.inner_text(".message.user .body") == "line one\nline two"
    # Both sessions are listed with their titles; the first resumes with its history.
    page.click(f"#session-list a[data-session='{first}']")
    page.wait_for_selector("#chat-title:has-text('My name is Ada')")
    page.wait_for_selector(".message.assistant:has-text('Hello Ada.')")
    assert page.inner_text(f"#session-list a[data-session='{second}'] .title") == "line one line two"
    page.fill("#prompt", "What is my name?")
    page.keyboard.press("Enter")
    page.wait_for_selector(".message.assistant:has-text('You said your name is Ada.')")
    assert current_session(page) == first
    assert len(messages(server, first)) == 4
    # Export downloads the session in the chosen format.
    page.select_option("#export-format", "json")
    with page.expect_download() as info:
        page.click("#export")
    exported = json.loads(Path(info.value.path()).read_text())
    text = json.dumps(exported)
    assert "My name is Ada" in text and "You said your name is Ada." in text
    assert info.value.suggested_filename.endswith(".json")


def test_phone_width_keeps_the_chat_usable(server: LiveServer, model: ScriptedModel, page: Any, tmp_path: Path) -> None:
    model.add("Small screens work too.")
    page.set_viewport_size(PHONE)
    login(page, server)
    page.fill("#prompt", "hello from a phone")
    page.click("#send")
    page.wait_for_selector(".message.assistant:has-text('Small screens work too.')")
    wide = page.evaluate(
        "[...document.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > innerWidth + 1)"
        ".map(e => e.tagName + '.' + e.className + '#' + e.id)"
    )
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), wide
    for selector in ("#prompt", "#send", "#new-chat"):
        box = page.query_selector(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], selector
    screenshot(page, "chat-phone", tmp_path)
