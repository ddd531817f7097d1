"""`ChatApp`: the chat workflow with its services, as the terminal and HTTP interfaces use it."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from ...core.errors import NanoBrainError
from ...core.events import RunEvent
from ...core.workflow import Workflow
from ...llm.messages import Message
from ...llm.provider import Provider
from .services import ChatServices, ServiceStep
from .steps import ChatAgentStep, ValidateInput

DEFAULT_CONFIG = Path(__file__).with_name("chat.yaml")

_SESSION_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")


class InvalidChatInput(NanoBrainError, ValueError):
    """A session id or message the chat refuses before doing any work."""


def check_session_id(session_id: str) -> str:
    """`session_id` if it is a usable session id, else InvalidChatInput saying what one looks like."""
    if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
        shown = repr(session_id) if isinstance(session_id, str) and len(session_id) <= 60 else "given"
        raise InvalidChatInput(
            f"the session id {shown} is not valid: use 1 to 128 letters, digits or . _ : @ - "
            "(or leave it out to start a new session)"
        )
    return session_id


class ChatApp:
    """Load the chat workflow, connect it to history and sessions, and run turns."""

    def __init__(self, workflow: Workflow, services: ChatServices, *, database: Any = None, user: str | None = None):
        self.workflow = workflow
        self.services = services
        self.database = database
        self.user = user
        for step in workflow.walk():
            if isinstance(step, ServiceStep):
                step.bind(services)

    @classmethod
    async def open(
        cls,
        *,
        config: str | os.PathLike[str] | None = None,
        model: str | Provider | None = None,
        database_url: str | None = None,
        user: str | None = None,
    ) -> ChatApp:
        """Load `config` (default: the bundled chat.yaml) with history in `database_url` (default: SQLite)."""
        from ...config.loader import load_workflow
        from ...infrastructure.data.database import Database
        from ...infrastructure.data.history import ConversationHistory
        from ...infrastructure.data.sessions import SessionManager

        workflow = load_workflow(config or DEFAULT_CONFIG)
        database = Database(database_url)
        provider = _resolve(model)
        services = ChatServices(ConversationHistory(database), SessionManager(database), model=provider)
        return cls(workflow, services, database=database, user=user)

    # -- models -----------------------------------------------------------------------------
    def agents(self) -> list[ChatAgentStep]:
        return [s for s in self.workflow.walk() if isinstance(s, ChatAgentStep)]

    async def switch_model(self, model: str | Provider) -> Provider:
        """Use `model` for every agent from now on, once it loaded: a model that cannot be used
        (ModelNotConfigured with instructions) leaves the current one in place."""
        provider = _resolve(model)
        assert provider is not None
        load = getattr(provider, "load", None)
        if load is not None:
            await load()
        self.services.model = provider
        for agent in self.agents():
            agent.bind(self.services)
        return provider

    def models(self) -> list[str]:
        return sorted({step.agent.model_label for step in self.agents()})

    async def warm_up(self) -> None:
        """Resolve every agent's model now (clear errors early) and load local models."""
        seen: set[int] = set()
        for step in self.agents():
            provider = step.agent.model
            if id(provider) in seen:
                continue
            seen.add(id(provider))
            load = getattr(provider, "load", None)
            if load is not None:
                await load()

    # -- sessions ------------------------------------------------------------------------------
    async def new_session(self, title: str | None = None) -> str:
        session = await self.services.sessions.create(user_id=self.user, title=title)
        return session.id

    async def open_session(self, session_id: str) -> None:
        """Continue `session_id`, creating it when it does not exist yet (raises if it expired)."""
        check_session_id(session_id)
        if await self.services.sessions.get(session_id) is None:
            await self.services.sessions.create(user_id=self.user, session_id=session_id)
        else:
            await self.services.sessions.resume(session_id)

    async def resume(self, session_id: str) -> list[Message]:
        """Check the session exists and return its messages, oldest first."""
        check_session_id(session_id)
        await self.services.sessions.resume(session_id)
        stored = await self.services.history.messages(session_id, limit=1000)
        return [m.to_message() for m in stored]

    async def sessions(self, limit: int = 20) -> Sequence[Any]:
        return await self.services.sessions.list(user_id=self.user, limit=limit)

    async def export(self, session_ids: Sequence[str], path: str | os.PathLike[str]) -> None:
        from ...infrastructure.data.export import ExportManager

        await ExportManager(self.services.history, self.services.sessions).export(session_ids, path)

    # -- turns -------------------------------------------------------------------------------
    def check_message(self, text: str) -> str | None:
        """Why the workflow's validation would refuse `text` (None when it is fine), asked before
        any work is done for it (loading the model, opening a session)."""
        for step in self.workflow.walk():
            if isinstance(step, ValidateInput):
                problem = step.check(text)
                if problem is not None:
                    return problem
        return None

    def stream(self, session: str, text: str) -> AsyncIterator[RunEvent]:
        """Run one turn, yielding its events (tokens included)."""
        check_session_id(session)
        return self.workflow.stream(message=text, session=session, user=self.user)

    async def send(self, session: str, text: str) -> str:
        check_session_id(session)
        outputs = await self.workflow.run(message=text, session=session, user=self.user)
        return str(outputs["reply"])

    async def aclose(self) -> None:
        await self.workflow.aclose()
        if self.database is not None:
            await self.database.aclose()


def _resolve(model: str | Provider | None) -> Provider | None:
    if model is None or isinstance(model, Provider):
        return model
    from ...llm.selection import resolve_model

    return resolve_model(model)
