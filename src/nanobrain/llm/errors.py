"""Provider errors, classified so that only the retryable ones are retried.

A provider's error never shows its credentials: `without_secrets` redacts the configured key
(and bearer tokens, URL passwords) from the message a server's answer ends up in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..core.errors import NanoBrainError
from ..infrastructure.security.redaction import redact

#: The key sent to servers that need none (the SDKs insist on one): not a secret.
NO_KEY = "not-needed"


class ProviderError(NanoBrainError):
    """A language-model call failed. `retryable` says whether trying again may help."""

    retryable = False

    def __init__(self, message: str, *, provider: str = "", status: int | None = None) -> None:
        self.provider = provider
        self.status = status
        prefix = f"{provider}: " if provider else ""
        super().__init__(prefix + message)


class RateLimited(ProviderError):
    """The provider refused the call for now: HTTP 429 (too many requests or tokens for the key). Retryable."""

    retryable = True


class ProviderTimeout(ProviderError, TimeoutError):
    """No answer in time: the client's timeout expired, or the server answered HTTP 408. Retryable."""

    retryable = True


class ServerError(ProviderError):
    """The provider failed on its side: HTTP 5xx, 529 (overloaded) or 409, or an answer that broke off. Retryable."""

    retryable = True


class Unreachable(ProviderError):
    """The endpoint could not be reached (connection refused, DNS, TLS)."""

    retryable = True


class BadRequest(ProviderError):
    """The provider rejected the request itself (HTTP 400, 404: no such model or path, 422): not retried."""


class AuthError(ProviderError):
    """The API key was rejected (HTTP 401) or may not use this model (403): not retried; fix the key."""


class ModelNotConfigured(ProviderError):
    """No usable model: says how to configure one."""


def error_for_status(
    status: int, *, where: str, said: str, provider: str, model: str, key_advice: str, not_found_hint: str
) -> ProviderError:
    """Classify an HTTP error from a model API; every provider maps statuses the same way.

    `said` is the server's own words (e.g. `HTTP 429: slow down`); `key_advice` tells how to fix
    a rejected key; `not_found_hint` what to check when the model or path does not exist.
    """
    if status == 401:
        return AuthError(f"{where} rejected the API key ({said}). {key_advice}", provider=provider, status=status)
    if status == 403:
        return AuthError(
            f"{where} refused access to model {model!r} ({said}): the key may not use this model. {key_advice}",
            provider=provider,
            status=status,
        )
    if status == 404:
        return BadRequest(
            f"{where} has no model {model!r} or no such path ({said}). {not_found_hint}",
            provider=provider,
            status=status,
        )
    if status == 429:
        return RateLimited(f"{where} is rate-limiting requests ({said})", provider=provider, status=status)
    if status == 408:
        return ProviderTimeout(f"{where} timed out the request ({said})", provider=provider, status=status)
    if status == 529:
        return ServerError(f"{where} is overloaded ({said})", provider=provider, status=status)
    if status >= 500 or status == 409:
        return ServerError(f"{where} failed ({said})", provider=provider, status=status)
    if status == 402:
        return ProviderError(f"{where}: billing problem ({said})", provider=provider, status=status)
    return BadRequest(f"{where} rejected the request ({said})", provider=provider, status=status)


def root_cause(exc: BaseException) -> str:
    """The innermost exception behind `exc` as text (why a connection failed), or ""."""
    seen = exc
    for _ in range(10):
        inner = seen.__cause__ or seen.__context__
        if inner is None:
            break
        seen = inner
    return "" if seen is exc else f"{type(seen).__name__}: {seen}".rstrip(": ")


def shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def secret_headers(headers: Mapping[str, str]) -> list[str]:
    """The values of headers that carry credentials (Authorization, X-Api-Key, ...)."""
    words = ("auth", "key", "token", "secret", "cookie", "password")
    return [value for name, value in headers.items() if any(w in name.lower() for w in words)]


def without_secrets(error: ProviderError, cause: BaseException, secrets: Iterable[str | None]) -> ProviderError:
    """`error` with `secrets` (and bearer tokens, URL passwords) redacted from its message.

    `error.__cause__` is set to `cause` unless the cause's own text shows a secret (a server that
    echoes the key in its error body): raise it with `raise error from error.__cause__`.
    """
    known = [s for s in secrets if s and s != NO_KEY]
    message = str(error)
    clean = redact(message, known)
    if clean != message:
        error.args = (clean,)
    if cause is not error:
        shown = f"{cause} {getattr(cause, 'body', '')!r}"
        error.__cause__ = cause if redact(shown, known) == shown else None
    return error
