"""What the chat steps need from outside the workflow: history, sessions, the model override.

The runner (terminal, HTTP server, tests) creates the services and binds them to the loaded
workflow; steps never open databases on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...core.steps import Step

if TYPE_CHECKING:
    from ...infrastructure.data.history import ConversationHistory
    from ...infrastructure.data.sessions import SessionManager


@dataclass
class ChatServices:
    history: ConversationHistory
    sessions: SessionManager
    #: A model string or provider that replaces every chat agent's configured model.
    model: Any = None


class ServiceStep(Step):
    """A step that needs the chat services; the runner calls `bind` before the first run."""

    services: ChatServices | None = None

    def bind(self, services: ChatServices) -> None:
        self.services = services

    def require_services(self) -> ChatServices:
        if self.services is None:
            raise RuntimeError(
                f"step {self.name!r} needs chat services: run the chat workflow through ChatApp "
                "(nanobrain.workflows.chat.ChatApp) or call bind(services) first"
            )
        return self.services
