"""Server-Sent Events: frames, and the response that streams them without buffering."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

from starlette.responses import StreamingResponse

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
COMMENT_HEARTBEAT = b": heartbeat\n\n"


def frame(data: str, *, event: str | None = None, id: int | str | None = None) -> bytes:
    """One event: `id:` (for Last-Event-ID), `event:` (its type) and the data, one `data:` line per line."""
    lines = []
    if id is not None:
        lines.append(f"id: {id}")
    if event:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterable[bytes], *, headers: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(content, headers={**SSE_HEADERS, **(headers or {})}, **kwargs)
