"""`Agent`: a step that asks a language model, runs the tools it calls, and returns its answer."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import string
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ..core.context import StepContext, current_context
from ..core.data_units import DataUnit
from ..core.errors import NanoBrainError
from ..core.steps import Step
from ..llm.messages import ChatRequest, Completion, Finished, Message, TextDelta, ToolCall, Usage
from ..llm.provider import Provider
from ..llm.tools import Tool, Toolset, as_tool


class AgentError(NanoBrainError):
    """The agent could not produce an answer (round limit, invalid structured output)."""


@dataclass(frozen=True, slots=True)
class AgentTurn:
    """What one turn produced: the answer, the messages it added, the tokens it used."""

    value: Any
    messages: tuple[Message, ...]
    usage: Usage
    model: str

    @property
    def reply(self) -> Message:
        return self.messages[-1]


class ConversationMemory:
    """Recent turns per session, in memory (persistent history is a separate component)."""

    def __init__(self, max_messages: int = 50) -> None:
        self.max_messages = max_messages
        self._sessions: dict[str, deque[Message]] = {}

    def messages(self, session: str) -> list[Message]:
        return list(self._sessions.get(session, ()))

    def add(self, session: str, *messages: Message) -> None:
        self._sessions.setdefault(session, deque(maxlen=self.max_messages)).extend(messages)

    def clear(self, session: str | None = None) -> None:
        if session is None:
            self._sessions.clear()
        else:
            self._sessions.pop(session, None)


class Agent(Step):
    """A language-model step with tools.

    Inputs are the fields of the `prompt` template (`"{message}"` by default) plus an optional
    `session` that selects the conversation memory (without a session, nothing is remembered).
    The output `reply` is the answer's text, or an instance of `output_type` when one is given
    (the answer must validate against it; an invalid answer is sent back for correction at most
    `max_reasks` times).

    `tool_choice` is "auto" (the model decides), "required" (it must call a tool before it
    answers), "none" (no tool calls) or a tool's name (it must call that tool first). A required
    call is asked for until one is made; later rounds are "auto". A round that only repeats calls
    already made in the turn is dropped, and the next round asks for the answer without tools. An
    answer that is a tool call written as text (`{"tool": ..., "arguments": ...}`, as small models
    produce) is run as the call it is, or, in a round without tools, asked again in plain words.
    """

    def __init__(
        self,
        name: str = "agent",
        *,
        model: Provider | str | None = None,
        system: str = "",
        prompt: str = "{message}",
        tools: Iterable[Tool | Step | Toolset | Any] = (),
        max_rounds: int = 8,
        output_type: type[BaseModel] | None = None,
        max_reasks: int = 2,
        memory: ConversationMemory | bool = True,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tool_choice: str = "auto",
        **options: Any,
    ) -> None:
        fields = _template_fields(prompt, name)
        inputs: dict[str, Any] = {field: DataUnit(field, None) for field in fields}
        inputs["session"] = DataUnit("session", str | None, default=None)
        super().__init__(name, inputs=inputs, outputs={"reply": output_type or str}, **options)
        if max_rounds < 1:
            raise ValueError(f"agent {name!r}: max_rounds must be at least 1")
        self._model = model
        self.system = system
        self.prompt = prompt
        self.tools: dict[str, Tool] = {}
        #: Tool sources opened on first use (MCP servers, remote agents); their tools join `tools`.
        self.toolsets: list[Toolset] = []
        self._toolsets_opened: asyncio.Lock | None = None
        self._toolsets_ready = False
        self._toolset_tools: list[str] = []
        for t in tools:
            if isinstance(t, Toolset) and not isinstance(t, (Tool, Step)):
                self.toolsets.append(t)
                continue
            self._add_tool(as_tool(t))
        self.max_rounds = max_rounds
        self.output_type = output_type
        self.max_reasks = max_reasks
        self.memory = ConversationMemory() if memory is True else (memory or None)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.tool_choice = tool_choice
        if tool_choice not in ("auto", "none") and max_rounds < 2:
            raise ValueError(
                f"agent {name!r}: tool_choice {tool_choice!r} needs max_rounds of at least 2 "
                "(one round to call the tool, one to answer)"
            )
        problem = None if self.toolsets else self._tool_choice_problem()
        if problem is not None:
            raise ValueError(problem)
        self.description = self.description or f"Agent {name}"

    def _tool_choice_problem(self) -> str | None:
        """Why `tool_choice` cannot be met with the agent's tools, or None."""
        choice = self.tool_choice
        if choice in ("auto", "none") or (choice == "required" and self.tools) or choice in self.tools:
            return None
        wanted = "a tool call" if choice == "required" else f"the tool {choice!r}"
        known = ", ".join(self.tools) or "none"
        return f"agent {self.name!r}: tool_choice requires {wanted}, but its tools are: {known}"

    def _add_tool(self, tool: Tool) -> None:
        if tool.name in self.tools:
            raise ValueError(f"agent {self.name!r}: two tools are named {tool.name!r}")
        self.tools[tool.name] = tool

    async def open_toolsets(self) -> None:
        """Open the toolsets once (concurrent first turns wait for the same opening)."""
        if self._toolsets_ready or not self.toolsets:
            return
        if self._toolsets_opened is None:
            self._toolsets_opened = asyncio.Lock()
        async with self._toolsets_opened:
            if self._toolsets_ready:
                return
            try:
                for toolset in self.toolsets:
                    for found in await toolset.tools():
                        self._add_tool(found)
                        self._toolset_tools.append(found.name)
            except BaseException:
                # Leave no half-added tools behind: the next turn tries the whole opening again.
                for name in self._toolset_tools:
                    self.tools.pop(name, None)
                self._toolset_tools.clear()
                raise
            self._toolsets_ready = True

    @property
    def model(self) -> Provider:
        """The provider, resolved on first use (a model string or NANOBRAIN_MODEL)."""
        if not isinstance(self._model, Provider):
            from ..llm.selection import resolve_model

            self._model = resolve_model(self._model)
        return self._model

    @model.setter
    def model(self, model: Provider | str | None) -> None:
        """Swap the model: a provider, a model string resolved on first use, or None for the default.

        The previous provider is not closed: whoever created it owns it.
        """
        self._model = model

    @property
    def model_label(self) -> str:
        """The model's label without resolving it (no client is created, no file is loaded)."""
        if isinstance(self._model, Provider):
            return self._model.label
        return self._model or os.environ.get("NANOBRAIN_MODEL") or "local"

    @contextmanager
    def override(self, *, model: Provider | str | None) -> Iterator[Agent]:
        """Use `model` inside the block and put the previous one back afterwards (tests, experiments).

        The swap is on this agent object, so it is seen by every task using the agent meanwhile.
        """
        previous = self._model
        self._model = model
        try:
            yield self
        finally:
            self._model = previous

    async def aclose(self) -> None:
        """Close the model's client and the toolsets (they are opened again if the agent is used later)."""
        if isinstance(self._model, Provider):
            await self._model.aclose()
        for name in self._toolset_tools:
            self.tools.pop(name, None)
        self._toolset_tools.clear()
        self._toolsets_ready = False
        for toolset in self.toolsets:
            await toolset.aclose()

    async def health_check(self) -> bool:
        """The model's cheap probe (no generation): True, or an error saying why it cannot answer."""
        return await self.model.health_check()

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any]:
        reply = await self.ask(**inputs)
        return {"reply": reply}

    async def ask(self, session: str | None = None, **fields: Any) -> Any:
        """Answer one prompt (the template filled with `fields`), running tools as the model asks."""
        text = self.prompt.format(**{k: "" if v is None else v for k, v in fields.items()})
        # Memory is per explicit session: calls without one never see each other's turns.
        history = self.memory.messages(session) if self.memory and session is not None else []
        result = await self.run_turn(text, history=history)
        self._remember(session, result.messages)
        return result.value

    async def run_turn(self, text: str, *, history: Sequence[Message] = ()) -> AgentTurn:
        """One user turn on top of `history` (which the caller owns; memory is not used).

        Returns the answer and every message the turn added (the user's, tool calls, tool
        results, the final answer), with the usage of all model calls, for whoever persists it.
        """
        await self.open_toolsets()
        problem = self._tool_choice_problem()
        if problem is not None:
            raise AgentError(problem)
        messages: list[Message] = [Message.system(self._system_prompt())] if self._system_prompt() else []
        messages += history
        turn = [Message.user(text)]
        #: A request to answer in words, sent with the next call only (not part of the conversation).
        nudge: list[Message] = []
        context = current_context()
        usage = Usage()
        model_name = ""
        reasks = 0
        called = False
        #: The calls made in this turn: the same call again brings nothing new, so the model answers.
        made: set[str] = set()
        answer_now = False
        limit = self.max_rounds
        round_ = 0
        while round_ < limit:
            # The last round asks for an answer without tools, so that a model that keeps calling
            # tools still gets to answer (it may still refuse; then the round limit is an error).
            final = round_ == limit - 1 and round_ > 0
            choice = self._round_choice(called=called, final=final or answer_now)
            sent = messages + turn + nudge
            if context is not None:
                # Journaled in a durable run: a resumed firing does not pay for this call again.
                completion = await context.recorded(
                    f"model:{round_}:{len(turn)}",
                    functools.partial(self._complete, sent, context, tool_choice=choice),
                )
            else:
                completion = await self._complete(sent, None, tool_choice=choice)
            round_ += 1
            nudge = []
            usage = usage + completion.usage
            model_name = completion.model or model_name
            message = completion.message
            written = written_tool_calls(message.content) if self.tools and not message.tool_calls else ()
            if written and choice == "none":
                # Tools were not on offer: ask for the answer in words (one more round for it).
                if reasks >= self.max_reasks:
                    raise AgentError(
                        f"agent {self.name!r}: the model kept answering with a tool call written as text "
                        f"({shorten(message.content)}) where tools were not available"
                    )
                reasks += 1
                limit += 1
                nudge = [Message.user(WORDS_PLEASE)]
                continue
            if written:
                # A tool call written as text is still the call the model meant.
                message = Message.assistant("", written)
            if message.tool_calls:
                keys = [f"{c.name}:{json.dumps(c.arguments, sort_keys=True)}" for c in message.tool_calls]
                if made.issuperset(keys):
                    # Only calls it already made (small models loop like this): their results are
                    # in the conversation, so the next round asks for the answer without tools.
                    answer_now = True
                    continue
                made.update(keys)
                called = True
                turn.append(message)
                turn.extend(await self._run_tools(message.tool_calls, context))
                continue
            turn.append(message)
            if self.output_type is None:
                return AgentTurn(message.content, tuple(turn), usage, model_name or self.model.label)
            try:
                value = self.output_type.model_validate_json(_json_part(message.content))
            except ValidationError as exc:
                if reasks >= self.max_reasks:
                    raise AgentError(
                        f"agent {self.name!r}: the answer did not match {self.output_type.__name__} "
                        f"after {reasks} correction(s): {exc.errors()[0]['msg']}"
                    ) from exc
                reasks += 1
                turn.append(Message.user(_correction(exc, self.output_type)))
                continue
            return AgentTurn(value, tuple(turn), usage, model_name or self.model.label)
        raise AgentError(f"agent {self.name!r} did not finish within {self.max_rounds} model round(s)")

    def _round_choice(self, *, called: bool, final: bool) -> str:
        """The tool choice of one round: the agent's until a required call was made, then auto."""
        if final or self.tool_choice == "none":
            return "none"
        if self.tool_choice == "auto" or called:
            return "auto"
        return self.tool_choice

    def _system_prompt(self) -> str:
        if self.output_type is None:
            return self.system
        schema = json.dumps(self.output_type.model_json_schema())
        return (self.system + "\n\n" if self.system else "") + f"Answer with JSON matching this schema: {schema}"

    def _remember(self, session: str | None, turn: Sequence[Message]) -> None:
        if self.memory is not None and session is not None:
            self.memory.add(session, *turn)

    def _request(self, messages: Sequence[Message], tool_choice: str = "auto") -> ChatRequest:
        return ChatRequest(
            tuple(messages),
            tools=tuple(t.spec for t in self.tools.values()),
            tool_choice=tool_choice if self.tools else "auto",
            response_schema=self.output_type.model_json_schema() if self.output_type and not self.tools else None,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
        )

    async def _complete(
        self, messages: Sequence[Message], context: StepContext | None, *, tool_choice: str = "auto"
    ) -> Completion:
        model = self.model
        request = self._request(messages, tool_choice)
        if context is None:
            return await model.complete(request)
        if not context.streaming:
            whole = await model.complete(request)
            context.add_usage(prompt_tokens=whole.usage.prompt_tokens, completion_tokens=whole.usage.completion_tokens)
            return whole
        # Someone listens: time the call (and its first token) for metrics and traces.
        started = time.perf_counter()
        first_token: float | None = None
        completion: Completion | None = None
        try:
            async for chunk in model.stream(request):
                if isinstance(chunk, TextDelta):
                    if first_token is None:
                        first_token = time.perf_counter() - started
                    context.token(chunk.text)
                elif isinstance(chunk, Finished):
                    completion = chunk.completion
            if completion is None:
                raise AgentError(f"agent {self.name!r}: the model's stream ended without a final message")
        except Exception as exc:
            context.report(
                "llm_call",
                model=model.model or model.label,
                provider=model.provider,
                duration=time.perf_counter() - started,
                error=type(exc).__name__,
            )
            raise
        usage = completion.usage
        context.add_usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)
        context.report(
            "llm_call",
            model=completion.model or model.model or model.label,
            provider=model.provider,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            tool_calls=[c.name for c in completion.message.tool_calls],
            finish_reason=completion.finish_reason,
            duration=time.perf_counter() - started,
            time_to_first_token=first_token,
        )
        return completion

    async def _run_tools(self, calls: Sequence[ToolCall], context: StepContext | None) -> list[Message]:
        async def run(call: ToolCall) -> Message:
            tool = self.tools.get(call.name)
            if tool is None:
                known = ", ".join(self.tools) or "none"
                return Message.tool(call, f"there is no tool named {call.name!r} (tools: {known})", is_error=True)
            started = time.perf_counter()
            result = await tool.call(call.arguments)
            if context is not None:
                context.report(
                    "tool_call",
                    tool=call.name,
                    call_id=call.id,
                    arguments=call.arguments,
                    is_error=result.is_error,
                    duration=time.perf_counter() - started,
                )
            return Message.tool(call, result.content, is_error=result.is_error)

        return list(await asyncio.gather(*(run(c) for c in calls)))


def _template_fields(prompt: str, agent: str) -> list[str]:
    fields = []
    for _, field, _, _ in string.Formatter().parse(prompt):
        if field is None:
            continue
        if not field.isidentifier():
            raise ValueError(f"agent {agent!r}: prompt field {{{field}}} must be a plain name")
        if field not in fields:
            fields.append(field)
    if "session" in fields:
        raise ValueError(f"agent {agent!r}: 'session' is reserved and cannot be a prompt field")
    return fields


WORDS_PLEASE = (
    "Do not call a tool now. Answer my question in plain words, using the tool results above if there are any."
)

#: The keys a tool call written as text may have: `{"tool"|"name": ..., "arguments"|"parameters": {...}}`.
_NAME_KEYS = ("tool", "name")
_ARGUMENT_KEYS = ("arguments", "parameters")


def written_tool_calls(text: str) -> tuple[ToolCall, ...]:
    """The tool calls in an answer that is nothing but tool calls written as JSON, else ().

    Small models sometimes write `{"tool": "convert_temperature", "arguments": {...}}` (or the
    `name`/`parameters` form, or several such objects, or one in a code fence) as their answer.
    """
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").strip()
        body = body.removeprefix("json").strip()
    if not body.startswith(("{", "[")):
        return ()
    decoder = json.JSONDecoder()
    found: list[Any] = []
    position = 0
    try:
        while position < len(body):
            value, position = decoder.raw_decode(body, position)
            found.extend(value if isinstance(value, list) else [value])
            while position < len(body) and body[position] in " \t\r\n,":
                position += 1
    except json.JSONDecodeError:
        return ()
    calls = []
    for value in found:
        call = _written_call(value)
        if call is None:
            return ()
        calls.append(call)
    return tuple(calls)


def _written_call(value: Any) -> ToolCall | None:
    if not isinstance(value, dict) or not value or not set(value) <= {*_NAME_KEYS, *_ARGUMENT_KEYS}:
        return None
    names = [value[k] for k in _NAME_KEYS if k in value]
    arguments = [value[k] for k in _ARGUMENT_KEYS if k in value]
    if len(names) != 1 or not isinstance(names[0], str) or len(arguments) > 1:
        return None
    if arguments and not isinstance(arguments[0], dict):
        return None
    if "name" in value and not arguments:
        return None  # `{"name": "Paris"}` is an answer, not a call
    return ToolCall(f"call_{next(_written_ids)}", names[0], arguments[0] if arguments else {})


_written_ids = itertools.count(1)


def shorten(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_part(text: str) -> str:
    """The JSON object in an answer (models sometimes wrap it in prose or code fences)."""
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


def _correction(exc: ValidationError, output_type: type[BaseModel]) -> str:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors()[:5])
    return (
        f"Your answer did not match the required format ({problems}). Reply again with only a JSON "
        f"object matching this schema: {json.dumps(output_type.model_json_schema())}"
    )
