"""Provider errors, classified so that only the retryable ones are retried."""

from __future__ import annotations

from ..core.errors import NanoBrainError


class ProviderError(NanoBrainError):
    """A language-model call failed. `retryable` says whether trying again may help."""

    retryable = False

    def __init__(self, message: str, *, provider: str = "", status: int | None = None) -> None:
        self.provider = provider
        self.status = status
        prefix = f"{provider}: " if provider else ""
        super().__init__(prefix + message)


class RateLimited(ProviderError):
    retryable = True


class ProviderTimeout(ProviderError, TimeoutError):
    retryable = True


class ServerError(ProviderError):
    retryable = True


class Unreachable(ProviderError):
    """The endpoint could not be reached (connection refused, DNS, TLS)."""

    retryable = True


class BadRequest(ProviderError):
    pass


class AuthError(ProviderError):
    pass


class ModelNotConfigured(ProviderError):
    """No usable model: says how to configure one."""
