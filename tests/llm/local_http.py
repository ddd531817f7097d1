"""A minimal HTTP/1.1 server on 127.0.0.1 for testing LLM providers against their real SDKs.

Import it with `from tests.llm.local_http import LocalServer, Received, Response` (the project
root is on sys.path). A subclass decides what to answer in `answer(request)`; the server records
every request it receives (method, path, lower-cased headers, JSON body), keeps connections
alive, sends JSON with a content length and event streams chunked, event by event, as the real
APIs do. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Self

JSON = "application/json"
EVENT_STREAM = "text/event-stream; charset=utf-8"


@dataclass
class Received:
    """One request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class Response:
    """What to send back: a status, a body and its content type (JSON or an event stream)."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, status: int, value: Any, **headers: str) -> Response:
        return cls(status, json.dumps(value).encode(), JSON, headers)

    @classmethod
    def of_sse(cls, status: int, events: str | bytes, **headers: str) -> Response:
        return cls(status, events.encode() if isinstance(events, str) else events, EVENT_STREAM, headers)

    @property
    def is_stream(self) -> bool:
        return self.content_type.startswith("text/event-stream")


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return {529: "Overloaded"}.get(status, "Error")


class LocalServer:
    """Serves HTTP/1.1 on a free 127.0.0.1 port; use it as `async with` or call start()/stop().

    `answer(request)` returning None means "never answer": the server sets `waiting`, reads until
    the client gives up and disconnects, then sets `disconnected`.
    """

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.waiting = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def answer(self, request: Received) -> Response | None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bodies(self) -> list[Any]:
        return [r.body for r in self.requests]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:  # keep-alive: several requests per connection
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, path, _ = head[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:] if line)}
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Received(method, path, headers, json.loads(raw) if raw else None)
                self.requests.append(request)
                response = self.answer(request)
                if response is None:
                    self.waiting.set()
                    await reader.read()  # returns at EOF, when the client gives up
                    self.disconnected.set()
                    return
                await _write(writer, response)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


async def _write(writer: asyncio.StreamWriter, response: Response) -> None:
    head = f"HTTP/1.1 {response.status} {reason(response.status)}\r\ncontent-type: {response.content_type}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in response.headers.items())
    if not response.is_stream:
        writer.write(f"{head}content-length: {len(response.body)}\r\n\r\n".encode() + response.body)
        await writer.drain()
        return
    # An event stream, sent event by event in chunks, as the APIs do.
    writer.write(f"{head}cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n".encode())
    for event in response.body.split(b"\n\n"):
        if event.strip():
            data = event + b"\n\n"
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0)
    writer.write(b"0\r\n\r\n")
    await writer.drain()
