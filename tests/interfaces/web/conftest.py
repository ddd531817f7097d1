"""Browser tests of the web UI: Debian's Chromium driven by Playwright, against a live server.

Chromium is never downloaded: the system browser at /usr/bin/chromium is used (`apt-get install
chromium`; `.ci/run` installs it). Without it (or without the `playwright` package) these tests
skip with the reason, and fail under NANOBRAIN_REQUIRE_SERVICES=1. One browser per module; each
test gets a fresh context (a new tab with empty session storage).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import require
from tests.interfaces.http.conftest import ROLES, LiveServer, served_workflows

import nanobrain as nb
from nanobrain.infrastructure.security.api_keys import ApiKeyStore
from nanobrain.interfaces.http import Authenticator, ServerConfig, create_app
from nanobrain.workflows.chat import ChatApp

CHROMIUM = os.environ.get("NANOBRAIN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = "NANOBRAIN_UI_SCREENSHOTS"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


@nb.step
async def fetch_text(topic: str, seconds: float = 0.4) -> str:
    await asyncio.sleep(seconds)
    return f"notes about {topic}"


@nb.step
async def summarize(text: str) -> str:
    await asyncio.sleep(0.4)
    return text.upper()


def ui_workflows() -> list[nb.Workflow]:
    """The HTTP tests' workflows plus a two-step pipeline slow enough to watch its steps change."""
    pipeline = nb.Workflow.sequence(fetch_text, summarize, name="pipeline")
    pipeline.description = "Fetch notes about a topic, then summarize them"
    return [*served_workflows(), pipeline]


def start_ui_server(
    database: Path, model: Any, *, auth: bool = True, config: str | None = None, workflows: Sequence[Any] = ()
) -> LiveServer:
    """A live server with the chat (history in `database`), API keys for each role, and `workflows`."""
    keys: dict[str, str] = {}

    async def build() -> tuple[Any, list[Any]]:
        from nanobrain.infrastructure.data.journal import SqlJournalStore

        chat = await ChatApp.open(model=model, config=config, database_url=f"sqlite+aiosqlite:///{database}")
        store = ApiKeyStore(chat.database)
        for role in ROLES:
            _, keys[role] = await store.create(f"{role}-key", role)
        app = create_app(
            workflows=list(workflows),
            chat=chat,
            auth=Authenticator(store, cache_seconds=0) if auth else Authenticator(required=False),
            config=ServerConfig(heartbeat_seconds=0.5),
            journal=(journal := SqlJournalStore(chat.database)),
        )
        return app, [chat, journal]

    server = LiveServer(build).start()
    server.keys = keys  # type: ignore[attr-defined]
    return server


def chromium_missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the `playwright` package is not installed (pip install -e '.[test]')"
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM)):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = chromium_missing()
    require(missing is None, missing or "")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright's launch gives Chromium a fresh, empty --user-data-dir of its own.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    # Script errors and CSP violations; a refused request (the 401 before logging in) is expected.
    tab.on(
        "console",
        lambda msg: errors.append(msg.text)
        if msg.type == "error" and not msg.text.startswith("Failed to load resource")
        else None,
    )
    tab.errors = errors  # type: ignore[attr-defined]
    yield tab
    context.close()


def screenshot(page: Any, name: str, tmp_path: Path) -> Path:
    """Save a screenshot to $NANOBRAIN_UI_SCREENSHOTS (e.g. docs/ui) when set, else under tmp_path."""
    folder = Path(os.environ.get(SCREENSHOTS) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def login(page: Any, server: LiveServer, role: str = "admin", path: str = "/") -> None:
    page.goto(server.url + path)
    page.fill("#api-key", server.keys[role])  # type: ignore[attr-defined]
    page.click("form.login button")
    page.wait_for_selector("form.login", state="detached")


def wait_until(page: Any, expression: str, timeout: float = 15.0) -> Any:
    """Poll `expression` in the page until it is truthy (page.wait_for_function compiles its predicate
    with eval, which the UI's Content-Security-Policy rightly forbids)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        page.wait_for_timeout(30)
