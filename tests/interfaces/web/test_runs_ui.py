"""Workflows and runs in a real browser: a run started from a generated form and watched live, a
waiting run answered from the page, a failure shown with its message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.interfaces.http.conftest import LiveServer
from tests.interfaces.web.conftest import login, screenshot, start_ui_server, ui_workflows, wait_until

from nanobrain.llm import ScriptedModel


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    model = ScriptedModel(["Streamed **tokens** arrive here."], chunk_size=4)
    live = start_ui_server(tmp_path_factory.mktemp("runs") / "runs.db", model, workflows=ui_workflows())
    yield live
    live.close()


def node_state(page: Any, node: str) -> str:
    return str(page.get_attribute(f"#run-graph g[data-node='{node}']", "data-state"))


def test_a_run_started_from_the_form_is_watched_live(server: LiveServer, page: Any, tmp_path: Path) -> None:
    login(page, server, path="/#/workflows")
    page.click("#workflows a[data-workflow='pipeline']")
    page.wait_for_selector("#workflow-graph svg g[data-node='summarize']")
    # The form comes from the input schema: a required text field and a number with its default.
    assert page.get_attribute("#input-seconds", "type") == "number"
    assert page.input_value("#input-seconds") == "0.4"
    assert page.query_selector("label[for='input-topic'] .required") is not None
    page.click("#run-form button[type=submit]")  # topic is required: the form says so, nothing starts
    assert page.inner_text("[data-field='inputs.topic']") == "required"
    screenshot(page, "workflow-form", tmp_path)
    page.fill("#input-topic", "bees")
    page.fill("#input-seconds", "0.8")
    page.click("#run-form button[type=submit]")
    page.wait_for_selector("#run-graph g[data-node='fetch_text']")
    # Step states change as the run goes: fetch_text runs, then summarize, then both are done.
    wait_until(page, "document.querySelector(\"#run-graph g[data-node='fetch_text']\").dataset.state === 'running'")
    assert node_state(page, "summarize") == "idle"
    wait_until(page, "document.querySelector(\"#run-graph g[data-node='summarize']\").dataset.state === 'running'")
    assert node_state(page, "fetch_text") == "succeeded"
    screenshot(page, "run-inspector", tmp_path)
    page.wait_for_selector(".run[data-status=succeeded]")
    assert node_state(page, "summarize") == "succeeded"
    events = page.eval_on_selector_all("#timeline tr", "rows => rows.map(r => r.dataset.event)")
    assert events[0] == "run_started" and events[-1] == "run_finished"
    assert events.count("step_started") == 2 and events.count("step_finished") == 2
    durations = page.eval_on_selector_all(
        "#timeline tr.event-step_finished td:last-child", "cells => cells.map(c => c.innerText)"
    )
    assert all(d.endswith(" ms") and float(d[:-3]) >= 300 for d in durations), durations
    assert '"NOTES ABOUT BEES"' in page.inner_text("#run-outputs")
    assert '"topic": "bees"' in page.inner_text("[data-step='fetch_text'] .io")
    # The runs list shows it, finished.
    page.click("a[data-nav=runs]")
    page.wait_for_selector("#runs [data-status=succeeded]")
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_waiting_run_is_answered_from_the_page(server: LiveServer, page: Any) -> None:
    login(page, server, path="/#/workflows/add")
    page.wait_for_selector("#run-form")
    page.check("#durable")
    page.fill("#input-a", "2")
    page.click("#run-form button[type=submit]")
    page.wait_for_selector(".run[data-status=waiting]")
    # Only the missing input is asked for.
    assert page.query_selector("#input-form #input-b") is not None
    assert page.query_selector("#input-form #input-a") is None
    page.fill("#input-form #input-b", "40")
    page.click("#input-form button[type=submit]")
    page.wait_for_selector(".run[data-status=succeeded]")
    assert '"result": 42' in page.inner_text("#run-outputs")
    page.wait_for_selector("#run-graph g[data-node='add'][data-state=succeeded]")
    assert page.query_selector("#input-form") is None


def test_a_failed_run_shows_its_error(server: LiveServer, page: Any) -> None:
    login(page, server, path="/#/workflows/explode")
    page.wait_for_selector("#run-form")
    page.fill("#input-x", "7")
    page.click("#run-form button[type=submit]")
    page.wait_for_selector(".run[data-status=failed]")
    assert "cannot handle 7" in page.inner_text("#run-error-text")
    page.wait_for_selector("#run-graph g[data-node='explode'][data-state=failed]")
    assert "cannot handle 7" in page.inner_text("[data-step='explode'] .error")


def test_a_bad_input_is_named_next_to_its_field(server: LiveServer, page: Any) -> None:
    login(page, server, path="/#/workflows/echo")
    page.wait_for_selector("#run-form")
    assert page.get_attribute("#input-x", "type") == "number"
    page.fill("#input-x", "1.5")  # not an integer: the server names the field
    page.click("#run-form button[type=submit]")
    page.wait_for_selector("[data-field='inputs.x']:not(:empty)")
    assert "inputs.x" in page.inner_text("#run-form p.error")


def test_a_long_lived_run_takes_input_from_the_page_until_cancelled(server: LiveServer, page: Any) -> None:
    login(page, server, path="/#/workflows/echo")
    page.wait_for_selector("#run-form")
    page.select_option("#run-mode", "long_lived")
    page.click("#run-form button[type=submit]")  # no input yet: a long-lived run waits for it
    page.wait_for_selector(".run[data-status=waiting] #input-form")
    for value in ("5", "8"):
        page.fill("#input-form #input-x", value)
        page.click("#input-form button[type=submit]")
        page.wait_for_selector(f"#run-outputs:has-text('\"last\": {value}')")
        page.wait_for_selector(".run[data-status=waiting] #input-form")
    firings = page.eval_on_selector_all("#timeline tr.event-step_finished", "rows => rows.length")
    assert firings == 2  # one stream, each event once
    page.click("#cancel-run")
    page.wait_for_selector(".run[data-status=cancelled]")
    assert page.query_selector("#input-form") is None


def test_a_model_step_shows_its_tokens_and_the_run_its_usage(server: LiveServer, page: Any) -> None:
    login(page, server, path="/#/workflows/chat")  # the chat is a served workflow too
    page.wait_for_selector("#run-form #input-message")
    page.fill("#input-message", "Hello")
    page.fill("#input-session", "inspected")
    page.click("#run-form button[type=submit]")
    page.wait_for_selector(".run[data-status=succeeded]")
    page.wait_for_selector("[data-step='assistant'] .tokens:has-text('Streamed **tokens** arrive here.')")
    wait_until(page, "/completion: [1-9]/.test(document.getElementById('run-tokens').innerText)")
    assert page.get_attribute("#run-graph g[data-node='coder']", "data-state") == "idle"  # routed elsewhere
