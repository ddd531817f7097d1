"""The chat workflow: validate -> record -> enrich -> route -> agent -> format -> persist, declared in chat.yaml."""

from .app import DEFAULT_CONFIG, ChatApp
from .services import ChatServices, ServiceStep
from .turn import ChatTurn

__all__ = ["DEFAULT_CONFIG", "ChatApp", "ChatServices", "ChatTurn", "ServiceStep"]
