"""Opt-in caching of language-model answers, as a provider wrapper.

`CachingProvider(provider, cache)` answers a request it has seen before from the cache. The key
is a SHA-256 of the canonical JSON of everything that shapes the answer: provider, model,
messages, tools, tool choice, response schema and sampling parameters. Inside a run, each lookup
is reported as a `cache` event saying which level answered and which levels missed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

from ...core.context import current_context
from ...llm.messages import (
    ChatRequest,
    Completion,
    Finished,
    Message,
    StreamChunk,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from ...llm.provider import Provider, WrapperProvider
from .hierarchy import CacheHierarchy, CacheLookup

_FORMAT = 1


def request_fingerprint(provider: Provider, request: ChatRequest) -> dict[str, Any]:
    """Everything about a call that can change its answer, as plain JSON data."""
    return {
        "format": _FORMAT,
        "provider": provider.provider,
        "model": provider.model,
        "messages": [m.to_dict() for m in request.messages],
        "tools": [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in request.tools],
        "tool_choice": request.tool_choice,
        "response_schema": request.response_schema,
        "parameters": {
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "stop": list(request.stop),
            "extra": request.extra,
        },
    }


def cache_key(provider: Provider, request: ChatRequest, namespace: str = "llm:") -> str | None:
    """`namespace` + hex SHA-256 of the canonical JSON fingerprint; None when the request is not JSON data."""
    try:
        canonical = json.dumps(
            request_fingerprint(provider, request),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError):
        return None  # e.g. an object in `extra`: no stable key, so no caching
    return namespace + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def dump_completion(completion: Completion) -> bytes:
    data = {
        "format": _FORMAT,
        "message": completion.message.to_dict(),
        "usage": {
            "prompt_tokens": completion.usage.prompt_tokens,
            "completion_tokens": completion.usage.completion_tokens,
        },
        "model": completion.model,
        "finish_reason": completion.finish_reason,
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def load_completion(raw: bytes) -> Completion | None:
    """The completion, or None for an entry written in another format (treated as a miss)."""
    try:
        data = json.loads(raw)
        if data.get("format") != _FORMAT:
            return None
        usage = data.get("usage") or {}
        return Completion(
            Message.from_dict(data["message"]),
            Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
            data.get("model", ""),
            data.get("finish_reason", "stop"),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class CachingProvider(WrapperProvider):
    """Serves repeated requests from `cache`; otherwise asks `inner` and stores its answer.

    `stream` replays a cached answer as chunks (`chunk_size` characters of text, then the tool
    calls, then `Finished`); on a miss it passes the inner stream through and stores the final
    completion. A stream abandoned before its end stores nothing. Cached answers keep the usage
    they were produced with; the `cache` event tells a cached answer from a fresh one.
    """

    def __init__(
        self,
        inner: Provider,
        cache: CacheHierarchy,
        *,
        ttl: float | None = None,
        namespace: str = "llm:",
        chunk_size: int = 16,
    ) -> None:
        super().__init__(inner)
        self.cache = cache
        self.ttl = ttl
        self.namespace = namespace
        self.chunk_size = max(1, chunk_size)

    def key(self, request: ChatRequest) -> str | None:
        return cache_key(self.inner, request, self.namespace)

    async def _lookup(self, key: str) -> Completion | None:
        found = await self.cache.lookup(key)
        completion = None if found.value is None else load_completion(found.value)
        if completion is None and found.hit:
            # An entry this version cannot read counts as a miss; the fresh answer replaces it.
            found = CacheLookup(None, None, (*found.missed, str(found.level)))
        self._report(key, found)
        return completion

    def _report(self, key: str, found: CacheLookup) -> None:
        context = current_context()
        if context is not None:
            context.report(
                "cache", hit=found.hit, level=found.level, missed=list(found.missed), key=key, model=self.label
            )

    async def complete(self, request: ChatRequest) -> Completion:
        key = self.key(request)
        if key is None:
            return await self.inner.complete(request)
        cached = await self._lookup(key)
        if cached is not None:
            return cached
        completion = await self.inner.complete(request)
        await self.cache.set(key, dump_completion(completion), ttl=self.ttl)
        return completion

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        key = self.key(request)
        if key is None:
            async for chunk in self.inner.stream(request):
                yield chunk
            return
        cached = await self._lookup(key)
        if cached is not None:
            for chunk in self._replay(cached):
                yield chunk
            return
        async for chunk in self.inner.stream(request):
            if isinstance(chunk, Finished):
                await self.cache.set(key, dump_completion(chunk.completion), ttl=self.ttl)
            yield chunk

    def _replay(self, completion: Completion) -> list[StreamChunk]:
        text = completion.message.content
        chunks: list[StreamChunk] = [
            TextDelta(text[start : start + self.chunk_size]) for start in range(0, len(text), self.chunk_size)
        ]
        chunks.extend(
            ToolCallDelta(index, call.id, call.name, call.arguments_json())
            for index, call in enumerate(completion.message.tool_calls)
        )
        chunks.append(Finished(completion))
        return chunks
