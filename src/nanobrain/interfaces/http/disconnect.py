"""Cancel work whose client went away (for plain, non-streaming responses)."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from starlette.requests import Request

from .problems import ApiProblem

T = TypeVar("T")


class ClientDisconnected(ApiProblem):
    """The client went away before the answer: nobody reads this problem (nginx's 499)."""

    def __init__(self) -> None:
        super().__init__(499, "the client closed the connection before the answer", title="Client closed request")


async def unless_disconnected(request: Request, work: asyncio.Future[T]) -> T:
    """Await `work`; if the client disconnects first, cancel it and raise ClientDisconnected.

    The request body has been read by then, so the next ASGI message is the disconnect.
    """

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher: asyncio.Task[Any] = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work.cancel()
        raise
    finally:
        if not watcher.done():
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    if not work.done():
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        raise ClientDisconnected()
    return work.result()
