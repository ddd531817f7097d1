"""Sessions and their history over REST: list, read, export (the persistence layer's formats), delete."""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

from fastapi import Path, Query, Request
from fastapi.responses import Response

from ..auth import needs, protected_router
from ..problems import PROBLEM_JSON, ApiProblem

router = protected_router("sessions")

SessionId = Annotated[str, Path(min_length=1, max_length=200, description="The session's id")]
_MEDIA = {
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "markdown": "text/markdown; charset=utf-8",
}
_SUFFIX = {"json": "json", "jsonl": "jsonl", "csv": "csv", "markdown": "md"}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such session", "content": {PROBLEM_JSON: {}}}}


def _chat(request: Request) -> Any:
    chat = request.app.state.nanobrain.chat
    if chat is None:
        raise ApiProblem(404, "this server keeps no sessions (it does not serve the chat workflow)")
    return chat


def _session_view(session: Any) -> dict[str, Any]:
    from ....infrastructure.data.export import session_record

    return {**session_record(session), "message_count": session.message_count}


@router.get("/v1/sessions", summary="Sessions, most recently updated first", **needs("read"))
async def list_sessions(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    user: Annotated[str | None, Query(max_length=200, description="Only this user's sessions")] = None,
) -> dict[str, Any]:
    chat = _chat(request)
    found = await chat.services.sessions.list(user_id=user, limit=limit)
    request.app.state.nanobrain.audit.record(request.state.principal, "list", "sessions")
    return {"sessions": [_session_view(s) for s in found]}


@router.get("/v1/sessions/{session_id}", summary="A session and a page of its messages", responses=_NOT_FOUND,
            **needs("read"))
async def read_session(
    request: Request,
    session_id: SessionId,
    after_seq: Annotated[int, Query(ge=0, description="Messages after this sequence number")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    from ....infrastructure.data.export import message_record

    chat = _chat(request)
    session = await chat.services.sessions.get(session_id)
    if session is None:
        raise ApiProblem.field(404, "session_id", f"no session {session_id!r}")
    messages = await chat.services.history.messages(session_id, after_seq=after_seq, limit=limit)
    request.app.state.nanobrain.audit.record(request.state.principal, "read", f"session:{session_id}")
    return {**_session_view(session), "messages": [message_record(m) for m in messages]}


@router.get(
    "/v1/sessions/{session_id}/export",
    summary="Export a session: json and jsonl keep everything (and import back), csv and markdown read well",
    responses={
        200: {"content": {media.split(";")[0]: {} for media in _MEDIA.values()}},
        **_NOT_FOUND,
    },
    **needs("read"),
)
async def export_session(
    request: Request,
    session_id: SessionId,
    format: Annotated[Literal["json", "jsonl", "csv", "markdown"], Query()] = "json",
) -> Response:
    from ....infrastructure.data.export import ExportManager

    chat = _chat(request)
    if await chat.services.sessions.get(session_id) is None:
        raise ApiProblem.field(404, "session_id", f"no session {session_id!r}")
    out = io.StringIO()
    await ExportManager(chat.services.history, chat.services.sessions).export([session_id], out, format=format)
    request.app.state.nanobrain.audit.record(request.state.principal, "export", f"session:{session_id}", format=format)
    filename = f"session-{session_id[:40]}.{_SUFFIX[format]}".replace('"', "")
    return Response(
        out.getvalue(),
        media_type=_MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.delete(
    "/v1/sessions/{session_id}", summary="Delete a session and its messages", status_code=204, responses=_NOT_FOUND,
    **needs("admin"),
)
async def delete_session(request: Request, session_id: SessionId) -> Response:
    chat = _chat(request)
    if not await chat.services.sessions.delete(session_id):
        raise ApiProblem.field(404, "session_id", f"no session {session_id!r}")
    request.app.state.nanobrain.audit.record(request.state.principal, "delete", f"session:{session_id}")
    return Response(status_code=204)
