"""MCP servers as tool sources: `MCPToolset` connects (stdio or Streamable HTTP), lists the
server's tools and offers them to an agent with their JSON Schemas as given.

The connection lives in one background task that owns the SDK's context managers (anyio
requires entering and leaving them in the same task); calls from any task go through it.
A tool's error result reaches the model as a tool error; a server that is gone or hangs
fails the call with a `ProtocolError` naming the server, within the call's timeout.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...llm.tools import Tool, ToolResult, to_text
from ...optional import require
from ..errors import ProtocolError

if TYPE_CHECKING:
    from mcp import Client


class MCPToolset:
    """The tools of one MCP server, opened on first use and closed with `aclose`."""

    def __init__(
        self,
        command: Sequence[str] | str | None = None,
        *,
        url: str | None = None,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        headers: Mapping[str, str] | None = None,
        tools: Sequence[str] | None = None,
        prefix: str = "",
        timeout: float = 30.0,
        connect_timeout: float = 30.0,
    ) -> None:
        if (command is None) == (url is None):
            raise ValueError("MCPToolset: give either a command (stdio) or a url (Streamable HTTP)")
        self.command = shlex.split(command) if isinstance(command, str) else list(command or [])
        if command is not None and not self.command:
            raise ValueError("MCPToolset: the command is empty")
        self.url = url
        self.name = name or (url or " ".join(self.command))
        self.env = dict(env or {})
        self.cwd = cwd
        self.headers = dict(headers or {})
        self.only = list(tools) if tools is not None else None
        self.prefix = prefix
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._client: Client | None = None
        self._owner: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None
        self._tools: list[Tool] | None = None
        self._lock: asyncio.Lock | None = None

    @classmethod
    def from_config(cls, config: Any) -> MCPToolset:
        """From an `MCPServerConfig` (the `mcp_servers:` entries of an agent)."""
        return cls(**config.toolset_options())

    def __repr__(self) -> str:
        return f"MCPToolset({self.name!r})"

    async def tools(self) -> list[Tool]:
        """Connect (once) and return the server's tools as agent tools."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._tools is None:
                await self._open()
                self._tools = await self._list_tools()
            return list(self._tools)

    async def call(self, tool: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Call one of the server's tools; an error result comes back as a tool error."""
        client = await self._connected()
        try:
            result = await asyncio.wait_for(client.call_tool(tool, dict(arguments)), self.timeout)
        except TimeoutError:
            raise ProtocolError(
                f"MCP server {self.name!r}: tool {tool!r} did not answer within {self.timeout:g}s"
            ) from None
        except Exception as exc:
            if self._owner is not None and self._owner.done():
                raise ProtocolError(f"MCP server {self.name!r} is gone: {self._exit_reason()}") from exc
            raise ProtocolError(f"MCP server {self.name!r}: tool {tool!r} failed: {exc}") from exc
        return ToolResult(_result_text(result), is_error=bool(result.is_error))

    async def aclose(self, *, grace: float = 5.0) -> None:
        """Stop the server (stdio) or end the session (HTTP); `tools()` connects again later.

        The connection gets `grace` seconds to close politely, then it is cancelled."""
        owner, self._owner = self._owner, None
        self._tools = None
        self._client = None
        if owner is None:
            return
        if self._closing is not None:
            self._closing.set()
        try:
            await asyncio.wait_for(asyncio.shield(owner), grace)
        except TimeoutError:
            owner.cancel()
            await asyncio.gather(owner, return_exceptions=True)
        except Exception:  # the connection failed earlier; that was reported to the caller then
            pass

    async def __aenter__(self) -> MCPToolset:
        await self.tools()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _connected(self) -> Client:
        if self._client is None or self._owner is None or self._owner.done():
            if self._owner is not None and self._owner.done():
                raise ProtocolError(f"MCP server {self.name!r} is gone: {self._exit_reason()}")
            await self.tools()
        assert self._client is not None
        return self._client

    async def _open(self) -> None:
        require("mcp", extra="mcp", purpose="an MCP client")
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._closing = asyncio.Event()
        self._owner = asyncio.create_task(self._hold(ready, self._closing), name=f"mcp:{self.name}")
        try:
            self._client = await asyncio.wait_for(asyncio.shield(ready), self.connect_timeout)
        except TimeoutError:
            # Report now; the SDK's shutdown of the server (stdin closed, grace, kill) goes on behind.
            task = asyncio.create_task(self.aclose(grace=0))
            _closing.add(task)
            task.add_done_callback(_closing.discard)
            raise ProtocolError(f"MCP server {self.name!r} did not connect within {self.connect_timeout:g}s") from None
        except Exception as exc:
            await self.aclose()
            raise ProtocolError(f"MCP server {self.name!r} could not be started or reached: {_reason(exc)}") from exc

    async def _hold(self, ready: asyncio.Future[Client], closing: asyncio.Event) -> None:
        """Own the connection: enter the client, hand it over, wait for `aclose`, leave."""
        from mcp import Client

        try:
            async with Client(self._target(), read_timeout_seconds=self.timeout) as client:
                ready.set_result(client)
                await closing.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else ProtocolError(repr(exc)))
                ready.exception()  # marks it retrieved: nobody may be waiting any more
            if isinstance(exc, Exception):
                self._exit_error = exc
                return
            raise

    _exit_error: BaseException | None = None

    def _exit_reason(self) -> str:
        return _reason(self._exit_error) if self._exit_error else "the connection ended"

    def _target(self) -> Any:
        if self.url is not None:
            if not self.headers:
                return self.url
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            return streamable_http_client(self.url, http_client=httpx2.AsyncClient(headers=self.headers))
        from mcp import StdioServerParameters

        env = {**os.environ, **self.env} if self.env else None
        return StdioServerParameters(command=self.command[0], args=self.command[1:], env=env, cwd=self.cwd)

    async def _list_tools(self) -> list[Tool]:
        client = self._client
        assert client is not None
        listed = []
        cursor: str | None = None
        while True:
            page = await asyncio.wait_for(client.list_tools(cursor=cursor), self.timeout)
            listed.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        known = {t.name for t in listed}
        if self.only is not None:
            missing = [n for n in self.only if n not in known]
            if missing:
                raise ProtocolError(
                    f"MCP server {self.name!r} has no tool {', '.join(map(repr, missing))} "
                    f"(it has: {', '.join(sorted(known)) or 'none'})"
                )
        tools = []
        for spec in listed:
            if self.only is not None and spec.name not in self.only:
                continue
            tools.append(self._as_tool(spec.name, spec.description or spec.name, dict(spec.input_schema)))
        return tools

    def _as_tool(self, remote: str, description: str, schema: dict[str, Any]) -> Tool:
        async def call(**arguments: Any) -> ToolResult:
            return await self.call(remote, arguments)

        return Tool(self.prefix + remote, description, schema, call)


_closing: set[asyncio.Task[None]] = set()


def _result_text(result: Any) -> str:
    """The text a model sees: the text blocks, else the structured content, else a summary."""
    texts = []
    for block in result.content or ():
        text = getattr(block, "text", None)
        if text is not None:
            texts.append(text)
        else:
            texts.append(f"[{getattr(block, 'type', 'content')} content]")
    if texts:
        return "\n".join(texts)
    if result.structured_content is not None:
        return to_text(result.structured_content)
    return ""


def _reason(exc: BaseException | None) -> str:
    """The innermost useful message of an exception (anyio wraps failures in groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if exc is None:
        return "unknown"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


__all__ = ["MCPToolset"]
