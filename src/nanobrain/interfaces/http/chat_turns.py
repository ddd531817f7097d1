"""One chat turn served over HTTP: a task of its own that hands tokens to the response.

The turn runs apart from the response, so a turn cancelled by a disconnecting client or by the
server shutting down still keeps what was said: the user's message and the partial answer,
marked interrupted (as the terminal chat does on Ctrl-C).
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from ...core.events import RunFinished, Token
from ...workflows.chat.app import ChatApp


@dataclass
class TurnOutcome:
    """How a turn ended: `reply` and `turn` (a ChatTurn) when answered; `rejected` when validation refused it."""

    reply: str = ""
    turn: Any = None
    error: BaseException | None = None
    cancelled: bool = False

    @property
    def rejected(self) -> bool:
        return self.error is None and not self.cancelled and self.turn is None


@dataclass
class ChatTurnTask:
    """Runs `text` in `session`; `tokens` receives each piece of text, then None at the end."""

    chat: ChatApp
    session: str
    text: str
    user: str | None = None
    tokens: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    outcome: TurnOutcome = field(default_factory=TurnOutcome)
    task: asyncio.Task[None] | None = None

    def start(self, registry: set[asyncio.Task[Any]]) -> ChatTurnTask:
        self.task = asyncio.ensure_future(self._run())
        registry.add(self.task)
        self.task.add_done_callback(registry.discard)
        return self

    async def _run(self) -> None:
        chat = self.chat
        top = chat.workflow.name
        try:
            # The chat workflow stores the message before the model is called and keeps the
            # answer so far while it streams: a cancelled turn (client gone, server stopping)
            # keeps both, marked interrupted, when its stream is closed here.
            stream: Any = chat.workflow.stream(message=self.text, session=self.session, user=self.user)
            async with aclosing(stream) as events:
                async for event in events:
                    if isinstance(event, Token):
                        self.tokens.put_nowait(event.text)
                    elif isinstance(event, RunFinished) and event.path == top:
                        self.outcome.reply = str(event.outputs.get("reply", ""))
                        self.outcome.turn = event.outputs.get("turn")
        except asyncio.CancelledError:
            self.outcome.cancelled = True
            raise
        except Exception as exc:
            self.outcome.error = exc
        finally:
            self.tokens.put_nowait(None)

    def stop(self) -> None:
        """Cancel the turn once and let it finish on its own (it stores what it has).

        For callers that may themselves be under repeated cancellation (a response closed by
        the server): awaiting the turn there would cancel it again and again."""
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
