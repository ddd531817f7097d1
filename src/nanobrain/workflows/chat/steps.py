"""The chat workflow's steps; each does one thing. `chat.yaml` wires them together."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...agents.agent import Agent
from ...core.context import StepContext, _current, current_context
from ...core.data_units import DataUnit
from ...core.events import RunEvent, Token
from ...core.imports import import_object
from ...core.steps import Step
from ...infrastructure.data.history import HistoryEntry
from ...llm.messages import Message
from .draft import DEFAULT_INTERVAL, AnswerDraft
from .services import ServiceStep
from .turn import ChatTurn


class ValidateInput(Step):
    """Refuse empty, over-long or control-character input with a clear reply; pass the rest on."""

    inputs = {"message": str, "session": str, "user": DataUnit("user", str | None, default=None)}
    outputs = {"turn": ChatTurn, "rejected": str}

    def __init__(self, *, max_chars: int = 8000, **options: Any) -> None:
        super().__init__(**options)
        if max_chars < 1:
            raise ValueError("max_chars must be at least 1")
        self.max_chars = max_chars

    def check(self, text: str) -> str | None:
        """Why `text` is refused, or None when it is fine."""
        if not text.strip():
            return "Your message is empty. Type something to ask, or /help for commands."
        if len(text) > self.max_chars:
            return f"Your message is {len(text):,} characters long; the limit is {self.max_chars:,}. Please shorten it."
        bad = sorted({repr(c) for c in text if unicodedata.category(c) == "Cc" and c not in "\n\t"})
        if bad:
            return f"Your message contains control characters ({', '.join(bad[:5])}); please remove them."
        if any("\ud800" <= c <= "\udfff" for c in text):
            # Undecodable input bytes arrive as lone surrogates, which no model can take.
            return "Your message is not valid UTF-8 text (it contains undecodable bytes); please send it as UTF-8."
        return None

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any]:
        text = inputs["message"]
        problem = self.check(text)
        if problem is not None:
            return {"rejected": problem}
        return {"turn": ChatTurn(session=inputs["session"], text=text.strip(), user=inputs.get("user"))}


class RecordMessage(ServiceStep):
    """Store the user's message before the model is called: once a message is accepted, it is kept,
    whatever happens to the answer."""

    inputs = {"turn": ChatTurn}
    outputs = {"turn": ChatTurn}

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any]:
        turn: ChatTurn = inputs["turn"]
        stored = await self.require_services().history.append(turn.session, Message.user(turn.text))
        return {"turn": turn.with_(question_seq=stored.seq)}


def estimate_tokens(text: str) -> int:
    """A model-independent estimate (about four characters a token) used for budgets."""
    return max(1, (len(text) + 3) // 4)


class EnrichContext(ServiceStep):
    """Add the recent history (as much as fits `history_tokens`), the user's preferences and retrieved context."""

    inputs = {"turn": ChatTurn}
    outputs = {"turn": ChatTurn}

    def __init__(
        self,
        *,
        history_tokens: int = 1500,
        max_messages: int = 200,
        retrieve: str | Callable[..., Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.history_tokens = history_tokens
        self.max_messages = max_messages
        self.retrieve = import_object(retrieve) if isinstance(retrieve, str) else retrieve

    def window(self, messages: Sequence[Message]) -> tuple[Message, ...]:
        """The newest messages whose estimated tokens fit the budget, oldest first.

        A tool result is never kept without the assistant call that asked for it.
        """
        kept: list[Message] = []
        used = 0
        for message in reversed(messages):
            cost = estimate_tokens(message.content) + sum(
                estimate_tokens(c.arguments_json()) for c in message.tool_calls
            )
            if used + cost > self.history_tokens:
                break
            kept.append(message)
            used += cost
        kept.reverse()
        while kept and kept[0].role == "tool":
            kept.pop(0)
        return tuple(kept)

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any]:
        turn: ChatTurn = inputs["turn"]
        services = self.require_services()
        # The user's message may already be stored (RecordMessage): the history is what came before it.
        stored = await services.history.messages(turn.session, limit=self.max_messages, before_seq=turn.question_seq)
        history = self.window([m.to_message() for m in stored])
        preferences = await services.sessions.get_preferences(turn.user) if turn.user else {}
        context: tuple[str, ...] = ()
        if self.retrieve is not None:
            found = self.retrieve(turn.text)
            if hasattr(found, "__await__"):
                found = await found
            context = tuple(str(item) for item in found or ())
        return {"turn": turn.with_(history=history, preferences=dict(preferences), context=context)}


@dataclass(frozen=True)
class Rule:
    """Send a turn to `agent` when a keyword appears (as a word) or the regex matches."""

    agent: str
    keywords: tuple[str, ...] = ()
    regex: str | None = None

    def matches(self, text: str) -> bool:
        lowered = text.lower()
        if any(re.search(rf"\b{re.escape(k.lower())}\b", lowered) for k in self.keywords):
            return True
        return bool(self.regex and re.search(self.regex, text, re.IGNORECASE))


class Route(Step):
    """Choose the agent that answers, by the first matching delegation rule, else the default.

    Each agent is an output of this step, so the workflow's links decide where turns go.
    """

    inputs = {"turn": ChatTurn}

    def __init__(self, *, rules: Sequence[Mapping[str, Any]] = (), default: str = "assistant", **options: Any) -> None:
        self.rules = [_rule(i, r) for i, r in enumerate(rules)]
        names = [default] + [r.agent for r in self.rules if r.agent != default]
        super().__init__(outputs={name: ChatTurn for name in dict.fromkeys(names)}, **options)
        self.default = default

    def choose(self, text: str) -> str:
        return next((rule.agent for rule in self.rules if rule.matches(text)), self.default)

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any]:
        turn: ChatTurn = inputs["turn"]
        agent = self.choose(turn.text)
        return {agent: turn.with_(agent=agent)}


def _rule(index: int, raw: Mapping[str, Any]) -> Rule:
    unknown = set(raw) - {"agent", "keywords", "regex"}
    if unknown or "agent" not in raw:
        raise ValueError(f"rules[{index}] needs 'agent' and may have 'keywords' and 'regex' (got {sorted(raw)})")
    regex = raw.get("regex")
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            raise ValueError(f"rules[{index}].regex is not a valid regular expression: {exc}") from None
    return Rule(raw["agent"], tuple(raw.get("keywords") or ()), regex)


class ChatAgentStep(ServiceStep):
    """Answer a turn with a language-model agent (tokens stream into the run's events).

    With chat services bound, the answer so far is kept in the history while it streams (see
    `AnswerDraft`): written every `checkpoint_seconds`, and once more if the turn is stopped or fails.
    (In a workflow that did not store the user's message first, the first draft stores it.)
    """

    inputs = {"turn": ChatTurn}
    outputs = {"turn": ChatTurn}

    def __init__(
        self,
        *,
        model: str | None = None,
        system: str = "You are a helpful assistant.",
        tools: Sequence[str | Callable[..., Any]] = (),
        max_rounds: int = 6,
        temperature: float | None = None,
        max_tokens: int | None = 512,
        tool_choice: str = "auto",
        checkpoint_seconds: float = DEFAULT_INTERVAL,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if checkpoint_seconds <= 0:
            raise ValueError(f"checkpoint_seconds must be positive, got {checkpoint_seconds}")
        self.checkpoint_seconds = checkpoint_seconds
        resolved = [import_object(t) if isinstance(t, str) else t for t in tools]
        self.agent = Agent(
            self.name,
            model=model,
            system=system,
            tools=resolved,
            max_rounds=max_rounds,
            memory=False,
            temperature=temperature,
            max_tokens=max_tokens,
            tool_choice=tool_choice,
        )

    def bind(self, services: Any) -> None:
        super().bind(services)
        if services.model is not None:
            self.agent.model = services.model

    async def aclose(self) -> None:
        await self.agent.aclose()

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any]:
        turn: ChatTurn = inputs["turn"]
        text = turn.text
        if turn.context:
            text = "Context:\n" + "\n".join(f"- {c}" for c in turn.context) + f"\n\nQuestion: {turn.text}"
        if turn.preferences:
            prefs = ", ".join(f"{k}: {v}" for k, v in sorted(turn.preferences.items()))
            text = f"(User preferences: {prefs})\n{text}"
        question_seq = turn.question_seq
        if self.services is None:
            result = await self.agent.run_turn(text, history=turn.history)
            answer_seq = None
        else:
            draft = AnswerDraft(
                self.services.history,
                turn.session,
                agent=turn.agent,
                model=self.agent.model.label,
                interval=self.checkpoint_seconds,
                # A workflow without RecordMessage: the draft stores the message before itself.
                question=turn.text if question_seq is None else None,
            )
            token = _current.set(_collecting_tokens(current_context(), self.name, draft))
            try:
                async with draft:
                    result = await self.agent.run_turn(text, history=turn.history)
            finally:
                _current.reset(token)
            answer_seq = draft.seq
            question_seq = question_seq if question_seq is not None else draft.question_seq
        # Store the user's words as typed, not the enriched prompt.
        messages = (Message.user(turn.text), *result.messages[1:])
        answered = turn.with_(
            reply=str(result.value),
            messages=messages,
            usage=result.usage,
            model=result.model,
            question_seq=question_seq,
            answer_seq=answer_seq,
        )
        return {"turn": answered}


def _collecting_tokens(context: StepContext | None, step: str, draft: AnswerDraft) -> StepContext:
    """The step's context with a sink that also hands the agent's streamed text to `draft`.

    With no one else listening the agent streams all the same, so that the draft sees the answer.
    """
    forward = context.sink if context is not None else None
    run_id = context.run_id if context is not None else ""

    def sink(event: RunEvent) -> None:
        # Only the agent's own text: a tool that runs a workflow streams into the same sink.
        if isinstance(event, Token) and event.step == step and event.run_id == run_id:
            draft.add(event.text)
        if forward is not None:
            forward(event)

    if context is None:
        return StepContext(run_id, step, step, sink)
    return dataclasses.replace(context, sink=sink)


_BLANK_RUNS = re.compile(r"\n{3,}")


class FormatResponse(Step):
    """Tidy the answer: trim, collapse runs of blank lines."""

    inputs = {"turn": ChatTurn}
    outputs = {"turn": ChatTurn}

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any]:
        turn: ChatTurn = inputs["turn"]
        return {"turn": turn.with_(reply=_BLANK_RUNS.sub("\n\n", turn.reply.strip()))}


class PersistTurn(ServiceStep):
    """Write the user's message and everything the agent added before the turn counts as done."""

    inputs = {"turn": ChatTurn}
    outputs = {"turn": ChatTurn, "reply": str}

    async def process(self, inputs: dict[str, Any]) -> Mapping[str, Any]:
        turn: ChatTurn = inputs["turn"]
        services = self.require_services()
        await record_turn(services, turn)
        return {"turn": turn, "reply": turn.reply}


async def record_turn(services: Any, turn: ChatTurn) -> None:
    """Store a turn's messages in one transaction.

    The user's message is left out when it was stored before the model was called; the answer so
    far, when it was kept while streaming, is replaced by the final messages. The final answer
    carries the turn's model and token usage; assistant and tool messages say which agent
    produced them.
    """
    last = len(turn.messages) - 1
    entries = []
    for i, message in enumerate(turn.messages):
        if i == 0 and message.role == "user" and turn.question_seq is not None:
            continue
        is_answer = i == last and message.role == "assistant"
        metadata: dict[str, Any] = {"agent": turn.agent} if message.role != "user" and turn.agent else {}
        entries.append(
            HistoryEntry(
                message,
                model=turn.model or None if message.role == "assistant" else None,
                usage=turn.usage if is_answer else None,
                metadata=metadata or None,
            )
        )
    if turn.answer_seq is not None and entries:
        await services.history.replace(turn.session, turn.answer_seq, entries)
    else:
        await services.history.append_entries(turn.session, entries)
    await services.sessions.touch(turn.session)
