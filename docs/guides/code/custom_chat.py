"""Customising the chat: copy the bundled chat.yaml, change it, run it.

`nanobrain chat --config my-chat.yaml` runs the copy from the command line; here it is opened
in Python with a model you pass (the test passes a scripted one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nanobrain.workflows.chat as chat_package
from nanobrain.workflows.chat.app import ChatApp

BUNDLED = Path(chat_package.__file__).parent / "chat.yaml"


def write_custom_chat(folder: Path) -> Path:
    """A copy of the chat whose assistant is a pirate and whose coder also handles SQL questions."""
    text = BUNDLED.read_text()
    text = text.replace(
        'system: "You are NanoBrain, a helpful assistant. Keep answers short: one or two sentences unless asked for '
        'more."',
        "system: You are a pirate. Answer in one sentence, like a pirate.",
    )
    text = text.replace("keywords: [python, code,", "keywords: [sql, python, code,")
    path = folder / "my-chat.yaml"
    path.write_text(text)
    return path


async def ask(config: Path, model: Any, folder: Path, message: str) -> str:
    chat = await ChatApp.open(config=config, model=model, database_url=f"sqlite+aiosqlite:///{folder / 'chat.db'}")
    try:
        session = await chat.new_session()
        return await chat.send(session, message)
    finally:
        await chat.aclose()
