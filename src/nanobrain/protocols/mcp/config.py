"""`mcp_servers:` entries of an agent in workflow documents (pydantic only: no `mcp` import)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class MCPServerConfig(BaseModel):
    """One MCP server whose tools an agent may call: a command (stdio) or a URL (Streamable HTTP)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="A name for errors and logs (default: the command or URL)")
    command: list[str] | str | None = Field(None, description="Start the server and talk over its stdin/stdout")
    url: str | None = Field(None, description="The server's Streamable HTTP endpoint, e.g. http://127.0.0.1:8000/mcp")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables for a command")
    cwd: str | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP headers, e.g. Authorization")
    tools: list[str] | None = Field(None, description="Only these tools (default: all the server lists)")
    prefix: str = Field("", description="Put before each tool's name (to keep two servers' tools apart)")
    timeout: float = Field(30.0, gt=0, description="Seconds a tool call may take")
    connect_timeout: float = Field(30.0, gt=0, description="Seconds to start and connect")

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (stdio) or url (Streamable HTTP), not both or neither")
        if isinstance(self.command, list) and not self.command:
            raise ValueError("command must not be empty")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        if self.headers and self.url is None:
            raise ValueError("headers only apply to a url")
        return self

    def toolset_options(self) -> dict[str, Any]:
        return self.model_dump()
