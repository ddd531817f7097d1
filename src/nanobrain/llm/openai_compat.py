"""OpenAI and every server that speaks its chat-completions API (vLLM, Ollama, LM Studio, llama.cpp).

Built on the official `openai` SDK's `AsyncOpenAI`, so cancelling the awaiting task cancels the
HTTP request. The SDK's own retries are off: `ResilientProvider` retries, and only the errors
classified here as retryable.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .errors import (
    NO_KEY,
    BadRequest,
    ModelNotConfigured,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    ServerError,
    Unreachable,
    error_for_status,
    root_cause,
    secret_headers,
    shorten,
)
from .hosted import HostedProvider
from .messages import (
    ChatRequest,
    Completion,
    Finished,
    Message,
    StreamChunk,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from .provider import PROBE_TIMEOUT, parse_arguments

if TYPE_CHECKING:
    import httpx2
    from openai import AsyncOpenAI

OPENAI_BASE_URL = "https://api.openai.com/v1"
_TOOL_CHOICES = ("auto", "none", "required")


class OpenAICompatibleProvider(HostedProvider):
    """A model behind an OpenAI-compatible `/chat/completions` endpoint.

    Without `base_url` it talks to OpenAI (or `OPENAI_BASE_URL`) with `api_key` or
    `OPENAI_API_KEY`. With `base_url` (e.g. `http://127.0.0.1:8000/v1`) a key is optional.
    `api_key_source` names where a given `api_key` came from (say, a config field), for the
    message that tells how to fix a rejected key; errors never show the key itself.
    """

    provider = "openai"
    base_url_variable = "OPENAI_BASE_URL"
    default_base_url = OPENAI_BASE_URL

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 120.0,
        organization: str | None = None,
        api_key_source: str | None = None,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        super().__init__(model)
        self.base_url = base_url.rstrip("/") if base_url else None
        self.api_key = api_key
        self.api_key_source = api_key_source
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.organization = organization
        #: The caller's `httpx2` client, the SDK's HTTP library (a proxy, or `httpx2.MockTransport` in
        #: tests); the caller closes it.
        self.http_client = http_client
        self._client: AsyncOpenAI | None = None
        # Compatible servers that reject newer request fields are remembered, and asked the older way.
        self._stream_usage = True  # `stream_options.include_usage`
        self._json_schema = True  # `response_format` of type json_schema (else json_object + schema)

    # -- the client ---------------------------------------------------------------------------
    def _key(self) -> tuple[str | None, str]:
        """The key to send and where it came from (the order the client is built with)."""
        if self.api_key:
            return self.api_key, self.api_key_source or "the api_key passed to OpenAICompatibleProvider"
        return os.environ.get("OPENAI_API_KEY") or None, "the environment variable OPENAI_API_KEY"

    @property
    def _key_advice(self) -> str:
        key, source = self._key()
        if not key or key == NO_KEY:
            return "No API key was sent (none is configured): set OPENAI_API_KEY, or pass api_key=."
        return f"The key came from {source}: make that a valid key for this server."

    def _secrets(self) -> list[str | None]:
        return [self.api_key, os.environ.get("OPENAI_API_KEY"), *secret_headers(self.headers)]

    def _get_client(self) -> AsyncOpenAI:
        if self._client is None:
            from ..optional import MissingExtra, require

            try:
                openai = require("openai", extra="openai", purpose="the OpenAI-compatible provider")
            except MissingExtra as missing:  # a model that cannot be used, like one without a key
                raise ModelNotConfigured(str(missing), provider=self.provider) from missing
            key, _ = self._key()
            if not key:
                if self.base_url is None:
                    raise ModelNotConfigured(
                        f"model {self.model!r} on {self._where} needs an API key: set OPENAI_API_KEY "
                        "(or pass api_key=), or give base_url= for a server that needs none",
                        provider=self.provider,
                    )
                key = NO_KEY  # local servers ignore it; the SDK insists on one
            self._client = openai.AsyncOpenAI(
                api_key=key,
                base_url=self.endpoint,
                organization=self.organization,
                default_headers=self.headers or None,
                timeout=self.timeout,
                max_retries=0,
                http_client=self.http_client,
            )
        return self._client

    async def _probe(self, client: AsyncOpenAI) -> None:
        await client.models.list(timeout=PROBE_TIMEOUT)

    # -- calls --------------------------------------------------------------------------------
    async def complete(self, request: ChatRequest) -> Completion:
        client = self._get_client()
        params = self._params(request)
        try:
            response = await self._create(client, params)
        except Exception as exc:
            error = self._classify(exc)
            raise error from error.__cause__
        if not response.choices:
            raise ServerError(f"{self._where} answered without any choice", provider=self.provider)
        choice = response.choices[0]
        message = choice.message
        calls = tuple(
            ToolCall(c.id or f"call_{i}", c.function.name, parse_arguments(c.function.arguments or "", c.function.name))
            for i, c in enumerate(message.tool_calls or ())
            if getattr(c, "function", None) is not None
        )
        return Completion(
            Message.assistant(message.content or message.refusal or "", calls),
            _usage(response.usage),
            response.model or self.model,
            choice.finish_reason or ("tool_calls" if calls else "stop"),
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        client = self._get_client()
        params = self._params(request)
        params["stream"] = True
        if self._stream_usage:
            params["stream_options"] = {"include_usage": True}
        try:
            response = await self._create(client, params)
        except Exception as exc:
            error = self._classify(exc)
            raise error from error.__cause__
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage = Usage()
        model = self.model
        finish_reason: str | None = None
        try:
            async for chunk in response:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                finish_reason = choice.finish_reason or finish_reason
                delta = choice.delta
                if delta is None:
                    continue
                if delta.content:
                    text.append(delta.content)
                    yield TextDelta(delta.content)
                for position, part in enumerate(delta.tool_calls or ()):
                    piece = _merge_tool_call(calls, part, position)
                    if piece is not None:
                        yield piece
        except Exception as exc:
            error = self._classify(exc)
            raise error from error.__cause__
        finally:
            await response.close()
        tool_calls = tuple(
            ToolCall(c["id"] or f"call_{i}", c["name"], parse_arguments(c["arguments"], c["name"]))
            for i, c in sorted(calls.items())
        )
        yield Finished(
            Completion(
                Message.assistant("".join(text), tool_calls),
                usage,
                model,
                finish_reason or ("tool_calls" if tool_calls else "stop"),
            )
        )

    async def _create(self, client: AsyncOpenAI, params: dict[str, Any]) -> Any:
        """POST /chat/completions; when the server rejects a newer field, ask again the older way."""
        from openai import APIStatusError

        while True:
            try:
                return await client.chat.completions.create(**params)
            except APIStatusError as exc:
                # llama-cpp-python answers a request it cannot validate with 500, others with 400/422.
                said = str(exc.body or exc.message)
                if exc.status_code not in (400, 422, 500):
                    raise
                if "stream_options" in params and "stream_options" in said:
                    self._stream_usage = False
                    params = {k: v for k, v in params.items() if k != "stream_options"}
                elif _format_type(params) == "json_schema" and ("response_format" in said or "json_schema" in said):
                    self._json_schema = False
                    params = {**params, "response_format": _json_object(params["response_format"])}
                else:
                    raise

    # -- mapping ------------------------------------------------------------------------------
    def _params(self, request: ChatRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [_message(m) for m in request.messages],
        }
        if request.tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in request.tools
            ]
        choice = request.tool_choice
        if choice not in _TOOL_CHOICES:
            names = [t.name for t in request.tools]
            if choice not in names:
                raise BadRequest(
                    f"tool_choice {choice!r} is not one of auto, none, required or a tool's name "
                    f"(tools: {', '.join(names) or 'none'})",
                    provider=self.provider,
                )
            params["tool_choice"] = {"type": "function", "function": {"name": choice}}
        elif request.tools and choice != "auto":
            params["tool_choice"] = choice
        elif not request.tools and choice == "required":
            raise BadRequest("tool_choice 'required' needs at least one tool", provider=self.provider)
        if request.response_schema is not None:
            schema = request.response_schema
            response_format = {"type": "json_schema", "json_schema": {"name": _schema_name(schema), "schema": schema}}
            params["response_format"] = response_format if self._json_schema else _json_object(response_format)
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.max_tokens is not None:
            # OpenAI's reasoning models reject `max_tokens`; most compatible servers know only it.
            key = "max_completion_tokens" if self.endpoint.startswith(OPENAI_BASE_URL) else "max_tokens"
            params[key] = request.max_tokens
        if request.stop:
            params["stop"] = list(request.stop)
        if request.extra:
            params["extra_body"] = dict(request.extra)
        return params

    def _classified(self, exc: BaseException) -> ProviderError:
        import openai

        where = self._where
        name = self.provider
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeout(f"{where} did not answer within {self.timeout:g}s", provider=name)
        if isinstance(exc, openai.APIConnectionError):
            cause = root_cause(exc)
            return Unreachable(
                f"cannot reach {where}{f' ({cause})' if cause else ''}. Check that the server is running and "
                "that the base URL is right (base_url=, or NANOBRAIN_MODEL=openai-compatible:MODEL@http://HOST:PORT/v1).",
                provider=name,
            )
        if isinstance(exc, openai.APIStatusError):
            detail = _detail(exc)
            said = f"HTTP {exc.status_code}{': ' + detail if detail else ''}"
            return error_for_status(
                exc.status_code,
                where=where,
                said=said,
                provider=name,
                model=self.model,
                key_advice=self._key_advice,
                not_found_hint="Check the model name and that the base URL ends where the API starts (usually /v1).",
            )
        if isinstance(exc, openai.APIError):
            # An error event inside a stream: the server accepted the request, then failed.
            kind = f"{exc.type or ''} {exc.code or ''}".lower()
            if "rate_limit" in kind:
                return RateLimited(f"{where}: {exc.message}", provider=name)
            return ServerError(f"{where} failed while answering: {exc.message}", provider=name)
        return ProviderError(f"{where}: {type(exc).__name__}: {exc}", provider=name)


def _message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        content = f"Error: {message.content}" if message.is_error else message.content
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content,
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json()}}
                for c in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def _merge_tool_call(calls: dict[int, dict[str, str]], part: Any, position: int) -> ToolCallDelta | None:
    """Add one streamed tool-call fragment; return the new information as a ToolCallDelta.

    Some servers (llama-cpp-python among them) repeat the id and the whole name in every
    fragment: only what is new is passed on, so that deltas concatenate to the real call.
    """
    index = part.index if isinstance(part.index, int) else position
    call = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
    function = part.function
    new_id = part.id if part.id and not call["id"] else None
    if new_id:
        call["id"] = new_id
    name_part = getattr(function, "name", None) or ""
    if name_part == call["name"]:
        name_part = ""
    call["name"] += name_part
    arguments = getattr(function, "arguments", None) or ""
    call["arguments"] += arguments
    if not (new_id or name_part or arguments):
        return None
    return ToolCallDelta(index, new_id, name_part or None, arguments)


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    return Usage(int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0))


def _format_type(params: dict[str, Any]) -> str | None:
    response_format = params.get("response_format")
    return response_format.get("type") if isinstance(response_format, dict) else None


def _json_object(response_format: dict[str, Any]) -> dict[str, Any]:
    """The older JSON mode with a schema (llama.cpp, vLLM, Anyscale) for servers without json_schema."""
    return {"type": "json_object", "schema": response_format["json_schema"]["schema"]}


def _schema_name(schema: dict[str, Any]) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "response"))
    return name[:64] or "response"


def _detail(exc: Any) -> str:
    """The server's own words about an HTTP error, short."""
    body = exc.body
    text = (body.get("message") or body.get("detail") or body.get("error") or body) if isinstance(body, dict) else body
    if text is None or text == "":
        return ""
    if not isinstance(text, str):
        text = json.dumps(text, ensure_ascii=False, default=str)
    return shorten(text)
