"""Anthropic's Messages API, through the official `anthropic` SDK's `AsyncAnthropic`.

Mapping from a `ChatRequest`:

- system messages become the top-level `system` parameter (joined by blank lines);
- an assistant message's tool calls become `tool_use` blocks, and our "tool" messages become
  `tool_result` blocks in a user turn (consecutive results share one turn, as the API requires);
- `tool_choice` "required" is `{"type": "any"}`, a tool's name is `{"type": "tool", ...}`;
- `response_schema` is answered through a forced tool, `final_answer`, whose `input_schema` is
  the schema (wrapped in `{"value": ...}` when the schema is not an object). The model's
  `tool_use` input comes back as the JSON text of the assistant message, never as a tool call.
  A forced tool works on every model and API version, unlike `output_config.format`.

The SDK's own retries are off: `ResilientProvider` retries, and only the errors classified here
as retryable. SDK 2.x speaks API version 2026-10-21, which has no sampling parameters, so a
`temperature` is an error unless `headers` pin an older `anthropic-version`.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import (
    NO_KEY,
    AuthError,
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
    from anthropic import AsyncAnthropic

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
#: The tool through which structured output is returned.
FINAL_ANSWER_TOOL = "final_answer"
#: The first API version without temperature, top_p and top_k.
_NO_SAMPLING_VERSION = "2026-10-21"

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}


@dataclass(frozen=True, slots=True)
class _Structured:
    """How the answer to a `response_schema` comes back: the forced tool, maybe wrapped."""

    wrapped: bool

    def answer(self, arguments: dict[str, Any]) -> str:
        value = arguments.get("value") if self.wrapped else arguments
        return json.dumps(value, ensure_ascii=False)


class AnthropicProvider(HostedProvider):
    """A Claude model behind Anthropic's Messages API (or a server that speaks it, via `base_url`).

    The key is `api_key` or `ANTHROPIC_API_KEY` (the SDK's other credential sources, such as
    `ANTHROPIC_AUTH_TOKEN` and profiles, work too). `max_tokens` is used when a request sets none.
    """

    provider = "anthropic"
    base_url_variable = "ANTHROPIC_BASE_URL"
    default_base_url = ANTHROPIC_BASE_URL

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_tokens: int = 1024,
        timeout: float = 120.0,
        headers: dict[str, str] | None = None,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        super().__init__(model)
        if max_tokens < 1:
            raise ValueError(f"AnthropicProvider({model!r}): max_tokens must be at least 1")
        self.api_key = api_key
        self.base_url = base_url.rstrip("/") if base_url else None
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.headers = dict(headers or {})
        #: The caller's `httpx2` client, the SDK's HTTP library (a proxy, or `httpx2.MockTransport` in
        #: tests); the caller closes it.
        self.http_client = http_client
        self._client: AsyncAnthropic | None = None

    # -- the client ---------------------------------------------------------------------------
    @property
    def _key_advice(self) -> str:
        if self.api_key:
            return (
                "The key came from the api_key passed to AnthropicProvider: pass a valid Anthropic API key "
                "there (or pass none and set ANTHROPIC_API_KEY)."
            )
        if os.environ.get("ANTHROPIC_API_KEY"):
            source = "the environment variable ANTHROPIC_API_KEY"
        elif os.environ.get("ANTHROPIC_AUTH_TOKEN"):
            source = "the environment variable ANTHROPIC_AUTH_TOKEN"
        elif getattr(self._client, "credentials", None):
            source = "the Anthropic SDK's credentials profile"
        else:
            return "No API key was sent (none is configured): set ANTHROPIC_API_KEY, or pass api_key=."
        return f"The key came from {source}: set it to a valid Anthropic API key."

    def _secrets(self) -> list[str | None]:
        client = self._client
        return [
            self.api_key,
            os.environ.get("ANTHROPIC_API_KEY"),
            os.environ.get("ANTHROPIC_AUTH_TOKEN"),
            getattr(client, "api_key", None),
            getattr(client, "auth_token", None),
            *secret_headers(self.headers),
        ]

    def _get_client(self) -> AsyncAnthropic:
        if self._client is None:
            from ..optional import MissingExtra, require

            try:
                anthropic = require("anthropic", extra="anthropic", purpose="the Anthropic provider")
            except MissingExtra as missing:  # a model that cannot be used, like one without a key
                raise ModelNotConfigured(str(missing), provider=self.provider) from missing
            try:
                client = anthropic.AsyncAnthropic(
                    api_key=self.api_key,
                    base_url=self.base_url,
                    timeout=self.timeout,
                    max_retries=0,
                    default_headers=self.headers or None,
                    http_client=self.http_client,
                )
            except anthropic.AnthropicError as exc:  # e.g. an unreadable credentials profile
                raise ModelNotConfigured(
                    f"cannot set up Anthropic credentials: {exc}. Set ANTHROPIC_API_KEY or pass api_key=.",
                    provider=self.provider,
                ) from exc
            if not (client.api_key or client.auth_token or client.credentials):
                if self.base_url is None:
                    raise ModelNotConfigured(
                        f"model {self.model!r} needs an API key: set ANTHROPIC_API_KEY (or pass api_key=)",
                        provider=self.provider,
                    )
                client.api_key = NO_KEY  # a local server may ignore it; the SDK insists on one
            self._client = client
        return self._client

    async def _probe(self, client: AsyncAnthropic) -> None:
        await client.models.list(limit=1, timeout=PROBE_TIMEOUT)

    # -- calls --------------------------------------------------------------------------------
    async def complete(self, request: ChatRequest) -> Completion:
        params, structured = self._params(request)
        client = self._get_client()
        try:
            response = await client.messages.create(**params)
        except Exception as exc:
            error = self._classify(exc)
            raise error from error.__cause__
        text: list[str] = []
        calls: list[ToolCall] = []
        answer: str | None = None
        for block in response.content:
            if block.type == "text":
                text.append(block.text)
            elif block.type == "tool_use":
                arguments = dict(block.input or {})
                if structured is not None and block.name == FINAL_ANSWER_TOOL:
                    answer = structured.answer(arguments)
                else:
                    calls.append(ToolCall(block.id, block.name, arguments))
        content = answer if answer is not None else "".join(text)
        return Completion(
            Message.assistant(content, tuple(calls)),
            _usage(response.usage),
            response.model or self.model,
            _finish_reason(response.stop_reason, has_calls=bool(calls)),
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        params, structured = self._params(request)
        client = self._get_client()
        try:
            events = await client.messages.create(**params, stream=True)
        except Exception as exc:
            error = self._classify(exc)
            raise error from error.__cause__
        text: list[str] = []
        # Per content-block index: our tool-call index, id, name and the arguments so far.
        calls: dict[int, dict[str, Any]] = {}
        answer_block: int | None = None
        answer_json: list[str] = []
        prompt_tokens = completion_tokens = 0
        model = self.model
        stop_reason: str | None = None
        try:
            async for event in events:
                if event.type == "message_start":
                    model = event.message.model or model
                    prompt_tokens = _prompt_tokens(event.message.usage)
                    completion_tokens = event.message.usage.output_tokens or 0
                elif event.type == "content_block_start":
                    block = event.content_block
                    if block.type == "text" and block.text:
                        text.append(block.text)
                        yield TextDelta(block.text)
                    elif block.type == "tool_use":
                        if structured is not None and block.name == FINAL_ANSWER_TOOL:
                            answer_block = event.index
                            continue
                        # The API starts a tool_use with empty input; a gateway may send it whole.
                        start = json.dumps(block.input, ensure_ascii=False) if block.input else ""
                        call = {"index": len(calls), "id": block.id, "name": block.name, "arguments": start}
                        calls[event.index] = call
                        yield ToolCallDelta(call["index"], block.id, block.name, start)
                elif event.type == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta":
                        text.append(delta.text)
                        yield TextDelta(delta.text)
                    elif delta.type == "input_json_delta" and delta.partial_json:
                        if event.index == answer_block:
                            answer_json.append(delta.partial_json)
                            if structured is not None and not structured.wrapped:
                                yield TextDelta(delta.partial_json)
                        elif event.index in calls:
                            call = calls[event.index]
                            call["arguments"] += delta.partial_json
                            yield ToolCallDelta(call["index"], arguments=delta.partial_json)
                elif event.type == "message_delta":
                    stop_reason = event.delta.stop_reason or stop_reason
                    completion_tokens = event.usage.output_tokens or completion_tokens
                    if event.usage.input_tokens is not None:
                        prompt_tokens = _prompt_tokens(event.usage)
        except ProviderError:
            raise
        except Exception as exc:
            error = self._classify(exc)
            raise error from error.__cause__
        finally:
            await events.close()
        tool_calls = tuple(
            ToolCall(c["id"], c["name"], parse_arguments(c["arguments"], c["name"]))
            for c in sorted(calls.values(), key=lambda c: c["index"])
        )
        content = "".join(text)
        if structured is not None and answer_block is not None:
            raw = "".join(answer_json)
            arguments = parse_arguments(raw, FINAL_ANSWER_TOOL)
            if structured.wrapped:
                content = structured.answer(arguments)
                yield TextDelta(content)
            else:
                # The streamed JSON itself, so that the deltas add up to the final text.
                content = raw if raw.strip() else "{}"
        yield Finished(
            Completion(
                Message.assistant(content, tool_calls),
                Usage(prompt_tokens, completion_tokens),
                model,
                _finish_reason(stop_reason, has_calls=bool(tool_calls)),
            )
        )

    # -- mapping ------------------------------------------------------------------------------
    def _params(self, request: ChatRequest) -> tuple[dict[str, Any], _Structured | None]:
        """The keyword arguments of `messages.create`, and how a structured answer comes back."""
        system = [m.content for m in request.messages if m.role == "system" and m.content]
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens or self.max_tokens,
            "messages": _turns(request.messages, self.provider),
        }
        if system:
            params["system"] = "\n\n".join(system)
        tools = [_tool(t.name, t.description, t.parameters) for t in request.tools]
        names = [t.name for t in request.tools]
        choice = request.tool_choice
        if choice not in ("auto", "none", "required") and choice not in names:
            raise BadRequest(
                f"tool_choice {choice!r} is not one of auto, none, required or a tool's name "
                f"(tools: {', '.join(names) or 'none'})",
                provider=self.provider,
            )
        if choice == "required" and not tools:
            raise BadRequest("tool_choice 'required' needs at least one tool", provider=self.provider)
        structured: _Structured | None = None
        tool_choice: dict[str, Any] | None = None
        if request.response_schema is not None:
            if FINAL_ANSWER_TOOL in names:
                raise BadRequest(
                    f"a tool is named {FINAL_ANSWER_TOOL!r}, the name this provider uses for structured "
                    "output (response_schema); rename the tool",
                    provider=self.provider,
                )
            schema = request.response_schema
            structured = _Structured(wrapped=schema.get("type") != "object")
            input_schema = (
                {"type": "object", "properties": {"value": schema}, "required": ["value"]}
                if structured.wrapped
                else schema
            )
            answer_tool = _tool(
                FINAL_ANSWER_TOOL,
                "Give the final answer. The input of this tool is the answer itself and must follow its schema.",
                input_schema,
            )
            if choice == "none" or not tools:
                tools, tool_choice = [answer_tool], {"type": "tool", "name": FINAL_ANSWER_TOOL}
            else:
                tools.append(answer_tool)
                tool_choice = {"type": "any"} if choice in ("auto", "required") else {"type": "tool", "name": choice}
        elif tools:
            tool_choice = {
                "auto": {"type": "auto"},
                "none": {"type": "none"},
                "required": {"type": "any"},
            }.get(choice) or {"type": "tool", "name": choice}
        if tools:
            params["tools"] = tools
            params["tool_choice"] = tool_choice
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        extra = dict(request.extra)
        if request.temperature is not None:
            version = self._api_version()
            if version >= _NO_SAMPLING_VERSION:
                raise BadRequest(
                    f"the Messages API version {version} has no temperature (nor top_p, top_k): remove "
                    "`temperature` for Anthropic models, or pin an older version with "
                    "headers={'anthropic-version': '2023-06-01'}",
                    provider=self.provider,
                )
            extra["temperature"] = request.temperature
        if extra:
            params["extra_body"] = extra
        return params, structured

    def _api_version(self) -> str:
        for name, value in self.headers.items():
            if name.lower() == "anthropic-version":
                return value
        try:
            from anthropic._constants import ANTHROPIC_API_VERSION
        except ImportError:  # a private module: assume the newest behaviour if it moves
            return _NO_SAMPLING_VERSION
        return ANTHROPIC_API_VERSION

    def _classified(self, exc: BaseException) -> ProviderError:
        import anthropic

        where = self._where
        name = self.provider
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, anthropic.APITimeoutError):
            return ProviderTimeout(f"{where} did not answer within {self.timeout:g}s", provider=name)
        if isinstance(exc, anthropic.APIConnectionError):
            cause = root_cause(exc)
            return Unreachable(
                f"cannot reach {where}{f' ({cause})' if cause else ''}. Check the network, and base_url= "
                "(or ANTHROPIC_BASE_URL) if you use a gateway.",
                provider=name,
            )
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code
            detail = exc.api_message or _detail(exc.body)
            kind = exc.type or ""
            said = f"HTTP {status}{f' {kind}' if kind else ''}{': ' + detail if detail else ''}"
            if status == 200:
                # An `error` event inside a stream: the request was accepted, then failed.
                return self._classify_stream_error(kind, said, where)
            return error_for_status(
                status,
                where=where,
                said=said,
                provider=name,
                model=self.model,
                key_advice=self._key_advice,
                not_found_hint="Check the model name (e.g. claude-sonnet-5-5) and that base_url stops before /v1: "
                "the SDK adds /v1/messages.",
            )
        return ProviderError(f"{where}: {type(exc).__name__}: {exc}", provider=name)

    def _classify_stream_error(self, kind: str, said: str, where: str) -> ProviderError:
        name = self.provider
        message = f"{where} failed while answering ({said.removeprefix('HTTP 200 ')})"
        if kind == "rate_limit_error":
            return RateLimited(message, provider=name)
        if kind == "timeout_error":
            return ProviderTimeout(message, provider=name)
        if kind in ("authentication_error", "permission_error"):
            return AuthError(f"{message}. {self._key_advice}", provider=name)
        if kind in ("invalid_request_error", "not_found_error"):
            return BadRequest(message, provider=name)
        return ServerError(message, provider=name)


def _turns(messages: tuple[Message, ...], provider: str) -> list[dict[str, Any]]:
    """Our messages as Messages-API turns: same-role neighbours merge, tool results join a user turn."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "tool":
            if not message.tool_call_id:
                raise BadRequest(
                    f"a tool result (tool {message.name!r}) has no tool_call_id to answer", provider=provider
                )
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
            if message.is_error:
                block["is_error"] = True
            role, blocks = "user", [block]
        else:
            role = message.role
            blocks = [{"type": "text", "text": message.content}] if message.content else []
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in message.tool_calls
            ]
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        content = turn["content"]
        # The short form for plain text, as the API documents it.
        if not content:
            turn["content"] = ""
        elif len(content) == 1 and content[0]["type"] == "text":
            turn["content"] = content[0]["text"]
    return turns


def _tool(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": name, "input_schema": schema}
    if description:
        tool["description"] = description
    return tool


def _finish_reason(stop_reason: str | None, *, has_calls: bool) -> str:
    if stop_reason is None:
        return "tool_calls" if has_calls else "stop"
    reason = _FINISH_REASONS.get(stop_reason, stop_reason)
    if reason == "tool_calls" and not has_calls:
        return "stop"  # the only tool used was the structured-output tool
    return reason


def _prompt_tokens(usage: Any) -> int:
    """All input tokens: the uncached ones plus those written to and read from the prompt cache."""
    return (
        int(usage.input_tokens or 0)
        + int(getattr(usage, "cache_creation_input_tokens", None) or 0)
        + int(getattr(usage, "cache_read_input_tokens", None) or 0)
    )


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    return Usage(_prompt_tokens(usage), int(usage.output_tokens or 0))


def _detail(body: object) -> str:
    """The server's own words about an HTTP error, short."""
    if body is None or body == "":
        return ""
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, default=str)
    return shorten(text)
