"""Errors of the protocol integrations."""

from __future__ import annotations

from ..core.errors import NanoBrainError


class ProtocolError(NanoBrainError):
    """A peer (MCP server, A2A agent) could not be reached, misbehaved, or timed out.

    `retryable` says whether trying again may help (unreachable, timed out) or not (the peer
    answered that the work failed); retry policies and circuit breakers read it.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable

