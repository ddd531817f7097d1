"""The scripted model: the test double for language-model calls (like httpx's MockTransport).

It answers from a queue of replies and/or a function of the request, streams in chunks, can
emit tool calls, and records every request it saw. It is never used unless asked for by name.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from pydantic import BaseModel

from .errors import ProviderError
from .messages import (
    ChatRequest,
    Completion,
    Finished,
    Message,
    StreamChunk,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from .provider import Provider

Reply = str | Message | Completion | ToolCall | list[ToolCall] | BaseModel | dict[str, Any] | BaseException
Responder = Callable[[ChatRequest], Reply]

_ids = itertools.count(1)


def call(name: str, **arguments: Any) -> ToolCall:
    """A tool call for scripts: `call("add", a=1, b=2)`."""
    return ToolCall(f"call_{next(_ids)}", name, arguments)


class ScriptedModel(Provider):
    """Answers with scripted replies, in order; then with `respond(request)` if given.

    A reply may be text, a tool call or a list of them, a Message or Completion, a pydantic
    model or dict (sent as JSON text), or an exception to raise. Running out of replies is an
    error, never an invented answer.
    """

    provider = "scripted"

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        respond: Responder | None = None,
        chunk_size: int = 4,
        delay: float = 0.0,
        model: str = "scripted",
    ) -> None:
        super().__init__(model)
        self.replies: deque[Reply] = deque(replies)
        self.respond = respond
        self.chunk_size = max(1, chunk_size)
        self.delay = delay
        self.requests: list[ChatRequest] = []
        #: What `health_check` answers: True, False, or an exception to raise (set it in tests).
        self.health: bool | BaseException = True

    def add(self, *replies: Reply) -> ScriptedModel:
        self.replies.extend(replies)
        return self

    def _next(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        if self.replies:
            reply = self.replies.popleft()
        elif self.respond is not None:
            reply = self.respond(request)
        else:
            raise ProviderError(
                f"no scripted reply left for request {len(self.requests)}", provider=self.provider
            )
        if isinstance(reply, BaseException):
            raise reply
        message = _as_message(reply)
        prompt = sum(_count(m.content) for m in request.messages)
        completion_tokens = _count(message.content) + sum(_count(c.arguments_json()) for c in message.tool_calls)
        if isinstance(reply, Completion):
            return reply
        return Completion(
            message,
            Usage(prompt, completion_tokens),
            self.model,
            "tool_calls" if message.tool_calls else "stop",
        )

    async def health_check(self) -> bool:
        if isinstance(self.health, BaseException):
            raise self.health
        return self.health

    async def complete(self, request: ChatRequest) -> Completion:
        if self.delay:
            await asyncio.sleep(self.delay)
        return self._next(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        completion = self._next(request)
        text = completion.message.content
        for start in range(0, len(text), self.chunk_size):
            if self.delay:
                await asyncio.sleep(self.delay)
            else:
                await asyncio.sleep(0)
            yield TextDelta(text[start : start + self.chunk_size])
        for index, tool_call in enumerate(completion.message.tool_calls):
            yield ToolCallDelta(index, tool_call.id, tool_call.name, tool_call.arguments_json())
        yield Finished(completion)


def _as_message(reply: Reply) -> Message:
    if isinstance(reply, Completion):
        return reply.message
    if isinstance(reply, Message):
        return reply
    if isinstance(reply, str):
        return Message.assistant(reply)
    if isinstance(reply, ToolCall):
        return Message.assistant("", (reply,))
    if isinstance(reply, list):
        return Message.assistant("", tuple(reply))
    if isinstance(reply, BaseModel):
        return Message.assistant(reply.model_dump_json())
    if isinstance(reply, dict):
        return Message.assistant(json.dumps(reply))
    raise TypeError(f"cannot script a reply of type {type(reply).__name__}")


def _count(text: str) -> int:
    return len(text.split())
