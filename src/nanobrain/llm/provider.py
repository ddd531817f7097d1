"""The provider interface: one `complete` and one `stream` call, like httpx's transport.

A provider turns a `ChatRequest` into a `Completion`. `stream` yields text and tool-call deltas
and ends with `Finished` carrying the whole completion and its usage. Implementations need only
`stream`; `complete` collects it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from ..core.clock import Clock, RealClock
from ..core.retry import RetryPolicy
from .errors import AuthError, ModelNotConfigured, ProviderError, ProviderTimeout, ServerError, Unreachable
from .messages import ChatRequest, Completion, Finished, Message, StreamChunk, TextDelta, ToolCall, ToolCallDelta


class Provider:
    """Base class of language-model providers."""

    #: Short name used in errors and events: "openai", "anthropic", "local", "scripted".
    provider = "provider"

    def __init__(self, model: str = "") -> None:
        self.model = model

    async def complete(self, request: ChatRequest) -> Completion:
        """One answer, whole."""
        return await collect(self.stream(request))

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """The answer as it is generated; the last chunk is `Finished`."""
        raise NotImplementedError(f"{type(self).__name__} does not implement stream()")

    async def aclose(self) -> None:
        """Release connections or loaded models."""

    async def health_check(self) -> bool:
        """A cheap probe, without generating: True when the model can answer now, else an error
        saying why (unreachable, rejected key, missing file). Health checkers call it.

        The base class knows no probe and answers True; each provider overrides it.
        """
        return True

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.model}" if self.model else self.provider

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r})"


class WrapperProvider(Provider):
    """A provider that adds one concern (caching, retries, instrumentation) around `inner`.

    It answers under the inner provider's name and model, passes every call through, and closes
    `inner` with itself; a subclass overrides only the calls its concern changes.
    """

    def __init__(self, inner: Provider) -> None:
        super().__init__(inner.model)
        self.inner = inner
        self.provider = inner.provider

    async def complete(self, request: ChatRequest) -> Completion:
        return await self.inner.complete(request)

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        return self.inner.stream(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def health_check(self) -> bool:
        # Not retried or cached: a failed probe is the information the health checker wants.
        return await self.inner.health_check()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


async def collect(chunks: AsyncIterator[StreamChunk]) -> Completion:
    """Assemble a stream into a Completion (uses `Finished` when the stream provides one)."""
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    async for chunk in chunks:
        if isinstance(chunk, Finished):
            return chunk.completion
        if isinstance(chunk, TextDelta):
            text.append(chunk.text)
        elif isinstance(chunk, ToolCallDelta):
            call = calls.setdefault(chunk.index, {"id": None, "name": "", "arguments": ""})
            call["id"] = chunk.id or call["id"]
            call["name"] += chunk.name or ""
            call["arguments"] += chunk.arguments
    tool_calls = tuple(
        ToolCall(c["id"] or f"call_{i}", c["name"], parse_arguments(c["arguments"], c["name"]))
        for i, c in sorted(calls.items())
    )
    return Completion(Message.assistant("".join(text), tool_calls))


def parse_arguments(text: str, tool: str) -> dict[str, Any]:
    """Tool-call arguments as a dict; malformed JSON becomes a BadRequest-like error the agent reports."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProviderError(f"model sent malformed JSON arguments for tool {tool!r}: {exc}") from None
    if not isinstance(value, dict):
        raise ProviderError(f"model sent arguments for tool {tool!r} that are not a JSON object")
    return value


#: A provider's own retries: only when nothing outside retries the call.
DEFAULT_RETRY = RetryPolicy(attempts=3, initial=0.5, max_wait=8.0, jitter=0.25, defer=True)

#: Seconds a provider's health probe may take (health checkers add their own timeout on top).
PROBE_TIMEOUT = 5.0
#: What a failed probe means: the endpoint cannot serve requests now. Other answers (a 404 from a
#: server without a model list, a rate limit) came from a live server, so the probe passes.
PROBE_FAILURES = (Unreachable, ProviderTimeout, ServerError, AuthError, ModelNotConfigured)


def probe_passed(error: ProviderError) -> bool:
    """True when a probe's error still shows a live, usable endpoint (raise `error` otherwise)."""
    if isinstance(error, PROBE_FAILURES):
        raise error from error.__cause__
    return True


class ResilientProvider(WrapperProvider):
    """Wraps a provider with a per-call timeout (that cancels the request) and retries.

    Only retryable errors are retried (rate limits, timeouts, server errors, unreachable
    endpoints: see `is_retryable`), with the policy's exponential backoff and jitter. The default
    policy defers: inside a pool that fails over, or a step's `retry:`, each call is tried once
    and the outer layer retries. A stream is retried only before its first chunk, with the same
    policy. The waits between attempts are slept on `clock` (default the event loop's; a
    `VirtualClock` in tests); the timeout is on the event loop's clock.
    """

    def __init__(
        self,
        inner: Provider,
        *,
        timeout: float | None = 120.0,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(inner)
        self.timeout = timeout
        self.retry = retry or DEFAULT_RETRY
        self.clock: Clock = clock or RealClock()

    async def complete(self, request: ChatRequest) -> Completion:
        async def attempt() -> Completion:
            try:
                async with asyncio.timeout(self.timeout):
                    return await self.inner.complete(request)
            except TimeoutError:
                raise ProviderTimeout(f"no answer within {self.timeout:g}s", provider=self.provider) from None

        return await self.retry.call(attempt, sleep=self.clock.sleep)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        async def start() -> tuple[AsyncIterator[StreamChunk], StreamChunk | None]:
            chunks = self.inner.stream(request).__aiter__()
            return chunks, await self._next(chunks)

        # Until the first chunk nothing has reached the caller, so the stream can start over:
        # that phase is one call under the retry policy, as `complete` is. Later errors propagate.
        chunks, chunk = await self.retry.call(start, sleep=self.clock.sleep)
        while chunk is not None:
            yield chunk
            chunk = await self._next(chunks)

    async def _next(self, chunks: AsyncIterator[StreamChunk]) -> StreamChunk | None:
        """The next chunk within the timeout, or None at the end of the stream."""
        try:
            async with asyncio.timeout(self.timeout):
                return await chunks.__anext__()
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise ProviderTimeout(f"stream stalled for {self.timeout:g}s", provider=self.provider) from None
