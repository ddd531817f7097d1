"""Language models: one provider interface, several providers, tools."""

from .errors import (
    AuthError,
    BadRequest,
    ModelNotConfigured,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    ServerError,
    Unreachable,
)
from .messages import (
    ChatRequest,
    Completion,
    Finished,
    Message,
    StreamChunk,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from .provider import Provider, ResilientProvider, WrapperProvider, collect
from .scripted import ScriptedModel, call
from .selection import resolve_model
from .tools import Tool, ToolResult, tool

__all__ = [
    "AuthError",
    "BadRequest",
    "ChatRequest",
    "Completion",
    "Finished",
    "Message",
    "ModelNotConfigured",
    "Provider",
    "ProviderError",
    "ProviderTimeout",
    "RateLimited",
    "ResilientProvider",
    "ScriptedModel",
    "ServerError",
    "StreamChunk",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolResult",
    "ToolSpec",
    "Unreachable",
    "Usage",
    "WrapperProvider",
    "call",
    "collect",
    "resolve_model",
    "tool",
]
