"""OpenAI-compatible chat: `POST /v1/chat/completions` (plain and streamed) and `GET /v1/models`.

The chat workflow answers. Without a session, a new one is created and seeded with the
request's earlier messages (what OpenAI clients send); with `X-Session-Id` (or `session_id` in
the body) the stored conversation continues and only the last message is new. The session id
comes back in the `X-Session-Id` header and the body's `session_id`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import Header, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..auth import Principal, needs, protected_router
from ..chat_turns import ChatTurnTask
from ..disconnect import ClientDisconnected, unless_disconnected
from ..problems import PROBLEM_JSON, ApiProblem, problem_for_failure
from ..runs import encode
from ..sse import EventStreamResponse

router = protected_router("openai")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {PROBLEM_JSON: {}}}
    for code, text in {
        401: "No or invalid credentials",
        403: "The key's role may not chat",
        404: "Unknown model",
        410: "The session expired",
        422: "Invalid request (the field is named)",
        502: "The model provider failed",
        503: "The model is not available",
        504: "The model provider timed out",
    }.items()
}


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's request; sampling options it does not use are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, description="A model id from GET /v1/models", examples=["chat"])
    messages: list[ChatMessage] = Field(min_length=1, examples=[[{"role": "user", "content": "Hello!"}]])
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="Only one choice is produced")
    user: str | None = Field(None, max_length=200)
    session_id: str | None = Field(
        None, min_length=1, max_length=200, description="NanoBrain: continue this stored conversation"
    )


def _state(request: Request) -> Any:
    return request.app.state.nanobrain


def _chat(request: Request) -> Any:
    chat = _state(request).chat
    if chat is None:
        raise ApiProblem(404, "this server does not serve the chat workflow")
    return chat


def _models(request: Request) -> list[dict[str, Any]]:
    chat = _state(request).chat
    if chat is None:
        return []
    return [{"id": chat.workflow.name, "object": "model", "created": 0, "owned_by": "nanobrain"}]


@router.get("/v1/models", summary="The models (chat workflows) this server answers with", **needs("read"))
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": _models(request)}


@router.get("/v1/models/{model}", summary="One model", **needs("read"))
async def get_model(request: Request, model: Annotated[str, Path(min_length=1, max_length=200)]) -> dict[str, Any]:
    for found in _models(request):
        if found["id"] == model:
            return found
    raise ApiProblem.field(
        404, "model", f"unknown model {model!r} (see GET /v1/models)", extra={"code": "model_not_found"}
    )


@router.post(
    "/v1/chat/completions",
    summary="Chat with the chat workflow (OpenAI-compatible; `stream: true` for SSE chunks)",
    responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
    **needs("run"),
)
async def chat_completions(
    request: Request,
    body: ChatCompletionRequest,
    x_session_id: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> Any:
    state = _state(request)
    chat = _chat(request)
    if body.model != chat.workflow.name:
        raise ApiProblem.field(
            404, "model", f"unknown model {body.model!r}: this server has {chat.workflow.name!r} (see GET /v1/models)",
            extra={"code": "model_not_found"},
        )
    if not state.runs.accepting:
        raise ApiProblem(503, "the server is shutting down", headers={"Retry-After": "5"})
    last = body.messages[-1]
    if last.role != "user":
        raise ApiProblem.field(
            422, f"messages.{len(body.messages) - 1}.role", f"the last message must be the user's, got {last.role!r}"
        )
    from ....workflows.chat.app import InvalidChatInput

    try:
        session = await _open_session(chat, x_session_id or body.session_id, body.messages[:-1], title=last.text())
    except InvalidChatInput as exc:
        raise ApiProblem.field(422, "X-Session-Id" if x_session_id else "body.session_id", str(exc)) from None
    principal: Principal = request.state.principal
    state.audit.record(principal, "chat", f"session:{session}", model=body.model, stream=body.stream)
    turn = ChatTurnTask(chat, session, last.text(), user=body.user).start(state.turns)
    created = int(time.time())
    completion_id = f"chatcmpl-{secrets.token_hex(12)}"
    headers = {"X-Session-Id": session}
    field = f"messages.{len(body.messages) - 1}.content"
    if not body.stream:
        try:
            await unless_disconnected(request, turn.task)  # type: ignore[arg-type]
        except (ClientDisconnected, asyncio.CancelledError):
            turn.stop()  # it stores what it has on its own; see ChatTurnTask.stop
            raise
        _raise_for(turn, field)
        return JSONResponse(_completion(completion_id, created, body.model, session, turn), headers=headers)
    # Wait for the first token (or the end) before answering, so refusals and failures get their status.
    first = await turn.tokens.get()
    if first is None:
        _raise_for(turn, field)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunks = _chunks(turn, first, completion_id, created, body.model, session, include_usage)
    return EventStreamResponse(chunks, headers=headers)


TITLE_CHARS = 60


def session_title(text: str) -> str:
    """A new session's title: the first line of its first message, shortened."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


async def _open_session(chat: Any, session: str | None, earlier: list[ChatMessage], *, title: str) -> str:
    """The session to answer in: the one named (created if new), or a new one seeded with `earlier`
    and titled after the first user message (what session lists show)."""
    from ....infrastructure.data.history import HistoryEntry
    from ....llm.messages import Message

    if session is not None:
        await chat.open_session(session)
        return session
    first = next((m.text() for m in earlier if m.role == "user"), title)
    session = await chat.new_session(title=session_title(first) or None)
    entries = []
    for message in earlier:
        role = "system" if message.role == "developer" else message.role
        if role == "tool":
            continue  # a tool result without its call cannot be replayed faithfully
        entries.append(HistoryEntry(Message(role, message.text())))
    if entries:
        await chat.services.history.append_entries(session, entries)
    return session


def _raise_for(turn: ChatTurnTask, field: str) -> None:
    outcome = turn.outcome
    if outcome.cancelled:
        raise ApiProblem(503, "the turn was stopped (the server is shutting down); the partial answer was kept")
    if outcome.error is not None:
        raise problem_for_failure(outcome.error, what="the chat turn")
    if outcome.rejected:
        raise ApiProblem.field(422, field, outcome.reply)


def _usage(turn: ChatTurnTask) -> dict[str, int]:
    usage = getattr(turn.outcome.turn, "usage", None)
    prompt = getattr(usage, "prompt_tokens", 0)
    completion = getattr(usage, "completion_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(cid: str, created: int, model: str, session: str, turn: ChatTurnTask) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": turn.outcome.reply},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": _usage(turn),
        "session_id": session,
    }


async def _chunks(
    turn: ChatTurnTask, first: str | None, cid: str, created: int, model: str, session: str, include_usage: bool
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            "session_id": session,
        }
        return b"data: " + encode(data).encode() + b"\n\n"

    try:
        if first is None:  # the turn ended without streaming (a model that does not stream)
            yield chunk({"role": "assistant", "content": turn.outcome.reply})
        else:
            yield chunk({"role": "assistant", "content": first})
            while (text := await turn.tokens.get()) is not None:
                yield chunk({"content": text})
        assert turn.task is not None
        await asyncio.gather(turn.task, return_exceptions=True)
        outcome = turn.outcome
        if outcome.error is not None or outcome.cancelled:
            problem = (
                problem_for_failure(outcome.error, what="the chat turn")
                if outcome.error is not None
                else ApiProblem(503, "the turn was stopped (the server is shutting down); the partial answer was kept")
            )
            error = {"message": problem.detail, "type": "server_error", "code": problem.status}
            yield b"data: " + encode({"error": error}).encode() + b"\n\n"
            return
        yield chunk({}, "stop")
        if include_usage:
            data = {
                "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [], "usage": _usage(turn), "session_id": session,
            }  # fmt: skip
            yield b"data: " + encode(data).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
    finally:
        # The client went away (or the stream ended): a turn still running is stopped and keeps its
        # partial answer. Not awaited here: this may run under the server's repeated cancellation.
        turn.stop()
