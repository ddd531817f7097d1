"""Errors of the protocol integrations."""

from __future__ import annotations

from ..core.errors import NanoBrainError


class ProtocolError(NanoBrainError):
    """A peer (MCP server, A2A agent) could not be reached, misbehaved, or timed out."""


def require(module: str, extra: str) -> None:
    """Fail clearly when an optional dependency is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ProtocolError(f"this needs the {module!r} package: pip install 'nanobrain[{extra}]'")
