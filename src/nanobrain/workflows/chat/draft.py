"""The answer so far, kept in the history while it streams.

A chat answer can take a while; a process that dies meanwhile (killed, its terminal closed, its
reader gone) must not lose what the user already saw. The draft is stored as an assistant
message marked interrupted and rewritten every `interval` seconds while text streams in, so a
`kill -9` loses at most that much of it; any other ending (cancelled, failed) stores it one last
time. When the turn completes, `PersistTurn` replaces the draft with the final messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ...llm.messages import Message

if TYPE_CHECKING:
    from ...infrastructure.data.history import ConversationHistory

DEFAULT_INTERVAL = 0.3
"""Seconds between two writes of the answer so far (what a `kill -9` can lose at most)."""


class AnswerDraft:
    """Collects streamed text (`add`) and keeps it stored while the `async with` block runs."""

    def __init__(
        self,
        history: ConversationHistory,
        session: str,
        *,
        agent: str = "",
        model: str | None = None,
        interval: float = DEFAULT_INTERVAL,
        question: str | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"the checkpoint interval must be positive, got {interval}")
        self.history = history
        self.session = session
        self.agent = agent
        self.model = model
        self.interval = interval
        #: The draft's position in the session once it was stored.
        self.seq: int | None = None
        #: The user's message, when it is not stored yet: stored with the first draft, just before it.
        self.question = question
        self.question_seq: int | None = None
        self._parts: list[str] = []
        self._stored_length = 0
        self._length = 0
        self._stop = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._length += len(text)

    async def save(self) -> None:
        """Store the text so far (nothing when it did not change), marked interrupted."""
        if self._length == self._stored_length:
            return
        from ...infrastructure.data.history import HistoryEntry

        length = self._length
        metadata: dict[str, Any] = {"agent": self.agent} if self.agent else {}
        metadata["interrupted"] = True
        entry = HistoryEntry(Message.assistant(self.text), model=self.model, metadata=metadata)
        if self.seq is None:
            entries = [entry] if self.question is None else [HistoryEntry(Message.user(self.question)), entry]
            stored = await self.history.append_entries(self.session, entries)
            self.seq = stored[-1].seq
            if self.question is not None:
                self.question_seq = stored[0].seq
        else:
            await self.history.replace(self.session, self.seq, [entry])
        self._stored_length = length

    async def _checkpoints(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
                return
            except TimeoutError:
                await self.save()

    async def __aenter__(self) -> AnswerDraft:
        self._writer = asyncio.ensure_future(self._checkpoints())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        # Stop the periodic writer without cutting a write short (it would leave us unsure
        # whether the draft exists); then store the rest: all of a stopped or failed answer, and
        # the tail of a completed one that has a draft (it stays the answer until it is replaced).
        self._stop.set()
        writer, self._writer = self._writer, None
        if writer is not None:
            await finish_despite_cancel(writer)
        if error is not None or self.seq is not None:
            await finish_despite_cancel(self.save())


async def finish_despite_cancel(work: Awaitable[Any]) -> Any:
    """Await `work` to the end even when this task is cancelled meanwhile; then re-raise the cancel.

    For short clean-up that must complete (storing what a stopped turn has): a second cancel, such
    as the event loop cancelling every task at shutdown, must not cut it short.
    """
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
            continue
        if cancelled:
            raise asyncio.CancelledError
        return result
