"""What the providers backed by a vendor SDK (OpenAI-compatible, Anthropic) share.

Each builds one SDK client lazily, sends requests to an endpoint chosen by argument, environment
variable or default, closes the client unless the caller owns its HTTP client, probes with a cheap
list call, and turns SDK exceptions into classified errors that never carry a secret.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from ..infrastructure.security.redaction import mask_url
from .errors import ProviderError, without_secrets
from .provider import Provider, probe_passed


class HostedProvider(Provider):
    """Base of the SDK-backed providers; subclasses say how to build, probe and classify."""

    #: The environment variable that moves the default endpoint, and that default.
    base_url_variable: ClassVar[str]
    default_base_url: ClassVar[str]

    base_url: str | None
    http_client: Any
    _client: Any

    @property
    def endpoint(self) -> str:
        """The base URL requests go to."""
        return self.base_url or os.environ.get(self.base_url_variable) or self.default_base_url

    @property
    def _where(self) -> str:
        """The endpoint as messages show it (a password in the URL masked)."""
        return mask_url(self.endpoint)

    def _get_client(self) -> Any:
        raise NotImplementedError

    async def _probe(self, client: Any) -> None:
        """The cheapest call that proves the API answers (raises the SDK's error when it does not)."""
        raise NotImplementedError

    def _secrets(self) -> list[str | None]:
        """Every value that must never appear in an error."""
        raise NotImplementedError

    def _classified(self, exc: BaseException) -> ProviderError:
        raise NotImplementedError

    def _classify(self, exc: BaseException) -> ProviderError:
        """Turn an SDK exception into a classified ProviderError, chained to it, without secrets."""
        return without_secrets(self._classified(exc), exc, self._secrets())

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self.http_client is None:  # the SDK would close the caller's client
            await client.close()

    async def health_check(self) -> bool:
        """A cheap list call with a short timeout: True when the API answers, else why not."""
        client = self._get_client()
        try:
            await self._probe(client)
        except Exception as exc:
            return probe_passed(self._classify(exc))
        return True
