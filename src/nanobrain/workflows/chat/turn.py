"""The value that travels through the chat workflow: one user turn, enriched as it goes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ...llm.messages import Message, Usage


@dataclass(frozen=True, slots=True)
class ChatTurn:
    session: str
    text: str
    user: str | None = None
    #: Filled by enrichment: earlier messages (within the token budget), preferences, retrieved context.
    history: tuple[Message, ...] = ()
    preferences: dict[str, Any] = field(default_factory=dict)
    context: tuple[str, ...] = ()
    #: Filled by routing and the agent.
    agent: str = ""
    reply: str = ""
    messages: tuple[Message, ...] = ()
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    #: Set by validation when the input was refused (the reply says why; no model was called).
    rejected: bool = False
    #: Where the history holds the user's message (stored before the model is called) and the
    #: answer so far (kept while it streams); None until stored.
    question_seq: int | None = None
    answer_seq: int | None = None

    def with_(self, **changes: Any) -> ChatTurn:
        return replace(self, **changes)
