"""Request body size limit, as ASGI middleware (a wrapper around the same callable)."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import PROBLEM_JSON, ApiProblem, encode_problem


class BodyTooLarge(ApiProblem):
    """A request body over the server's limit (`nanobrain serve --max-body`, 1 MiB by default): HTTP 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit:,} bytes")


class BodyLimit:
    """Refuse bodies over `max_bytes` with 413: by Content-Length up front, else while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit or declared < 0:
                    too_big = declared > limit
                    problem = BodyTooLarge(limit) if too_big else ApiProblem(400, "invalid Content-Length header")
                    await _send_problem(send, scope, problem)
                    return
        received = 0
        too_large = started = False

        async def limited() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # To the app the client has gone; this middleware answers instead.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # whatever the app makes of the "disconnect" is not sent
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await _send_problem(send, scope, BodyTooLarge(limit))


async def _send_problem(send: Send, scope: Scope, problem: ApiProblem) -> None:
    body = encode_problem(problem, path=scope.get("path", ""))
    headers: list[Any] = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
