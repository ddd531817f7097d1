"""How the local provider asks a small model: prompts, and the JSON schemas its output is forced to match.

Small local models do not follow tool-call formats on their own, so tool calls and structured output
use grammar-constrained decoding: `plan_request` picks the extra instructions and the JSON schema
(`{"tool": NAME, "arguments": {...}}` or `{"answer": "..."}` for tools; the response schema for
structured output), `compile_grammar` turns the schema into a llama.cpp grammar, `chat_messages`
renders the conversation for the model's chat template, and `parse_constrained` reads the output back.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from .errors import BadRequest, ProviderError
from .messages import ChatRequest, Message, ToolCall, ToolSpec

_call_ids = itertools.count(1)


@dataclass(frozen=True)
class Plan:
    """How to ask: extra system instructions, and the JSON schema the output must follow (if any)."""

    instructions: str = ""
    schema: dict[str, Any] | None = None
    tools: bool = False
    #: With tools: the schema of `{"answer": ...}`'s value, or None when an answer is not allowed.
    answer_schema: dict[str, Any] | None = None


def plan_request(request: ChatRequest) -> Plan:
    choice = request.tool_choice or "auto"
    if request.tools and choice == "none":
        # Tools were offered before and are not now (an agent's last round): a small model that
        # sees its earlier calls would write another one as its answer, so only an answer fits.
        only_answer = request.response_schema or {"type": "string"}
        return Plan(answer_instructions(only_answer), tools_schema([], only_answer), True, only_answer)
    if request.tools:
        if choice in ("auto", "required"):
            tools = list(request.tools)
        else:
            tools = [t for t in request.tools if t.name == choice]
            if not tools:
                known = ", ".join(t.name for t in request.tools)
                raise BadRequest(
                    f"tool_choice names {choice!r}, which is not among the tools ({known})", provider="local"
                )
        answer = None
        if choice == "auto":
            answer = request.response_schema or {"type": "string"}
        return Plan(tool_instructions(tools, choice, answer), tools_schema(tools, answer), True, answer)
    if request.response_schema is not None:
        return Plan(
            "Answer with only a JSON object matching this schema: " + compact(request.response_schema),
            request.response_schema,
        )
    return Plan()


def answer_instructions(answer: dict[str, Any]) -> str:
    shape = _answer_shape(answer)
    return (
        f"Tools cannot be called now. Answer the user's question in plain words, using the tool results "
        f"above if there are any. Reply with only {{\"answer\": {shape}}}."
    )


def _answer_shape(answer: dict[str, Any]) -> str:
    return '"<your answer>"' if answer == {"type": "string"} else "<JSON value matching " + compact(answer) + ">"


def tool_instructions(tools: list[ToolSpec], choice: str, answer: dict[str, Any] | None) -> str:
    lines = ["You can call these tools:"]
    for spec in tools:
        lines.append(f"- {spec.name}: {spec.description}. Arguments (JSON schema): {compact(spec.parameters)}")
    lines.append('To call a tool, reply with only {"tool": "<tool name>", "arguments": {<arguments>}}.')
    if answer is not None:
        shape = _answer_shape(answer)
        lines.append(
            f'To answer the user without a tool, reply with only {{"answer": {shape}}}. '
            "When a tool result already answers the question, answer."
        )
    elif choice == "required":
        lines.append("You must call one of the tools now.")
    else:
        lines.append(f"You must call the tool {choice} now.")
    return "\n".join(lines)


def tools_schema(tools: list[ToolSpec], answer: dict[str, Any] | None) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    options: list[dict[str, Any]] = []
    for index, spec in enumerate(tools):
        options.append(
            {
                "type": "object",
                "properties": {
                    "tool": {"const": spec.name},
                    "arguments": hoist_defs(spec.parameters or {"type": "object"}, f"tool{index}_", defs),
                },
                "required": ["tool", "arguments"],
                "additionalProperties": False,
            }
        )
    if answer is not None:
        options.append(
            {
                "type": "object",
                "properties": {"answer": hoist_defs(answer, "answer_", defs)},
                "required": ["answer"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = {"anyOf": options} if len(options) > 1 else dict(options[0])
    if defs:
        schema["$defs"] = defs
    return schema


def hoist_defs(schema: dict[str, Any], prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` whose local `$defs` move into `defs` (renamed), so that it can be nested.

    llama-cpp's schema converter resolves `#/$defs/...` against the root schema only.
    """
    local: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        local.update(schema.get(key) or {})

    def rewrite(node: Any) -> Any:
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        result = {}
        for key, value in node.items():
            if key in ("$defs", "definitions"):
                continue
            if key == "$ref" and isinstance(value, str):
                for root in ("#/$defs/", "#/definitions/"):
                    if value.startswith(root):
                        value = "#/$defs/" + prefix + value[len(root) :]
            result[key] = rewrite(value)
        return result

    for name, definition in local.items():
        defs[prefix + name] = rewrite(definition)
    return rewrite(schema)


def compact(schema: dict[str, Any]) -> str:
    """A schema as short JSON for the prompt (titles only cost tokens)."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    return json.dumps(strip(schema), ensure_ascii=False, separators=(",", ":"))


def chat_messages(request: ChatRequest, instructions: str) -> list[dict[str, str]]:
    """Messages for the model's chat template.

    Tool calls become the assistant's JSON (the format the model is constrained to) and tool results
    become user text: SmolLM2's ChatML template renders any role, but the model never learnt a "tool"
    role.
    """
    messages: list[dict[str, str]] = []
    previous: str | None = None
    question = ""
    made: dict[str, ToolCall] = {}
    for message in request.messages:
        if message.role == "user":
            question = message.content
        for call in message.tool_calls:
            made[call.id] = call
        if message.role == "tool":
            # The result beside the call that made it: a small model reads "f with x is y" best.
            origin = made.get(message.tool_call_id or "")
            label = message.name or "the tool"
            asked = f"{label} with {origin.arguments_json()}" if origin is not None else label
            text = (
                f"Tool {asked} failed: {message.content}"
                if message.is_error
                else f"The result of {asked} is {message.content}"
            )
            if previous == "tool":  # the results of one round go in one user turn
                messages[-1]["content"] += "\n\n" + text
            else:
                messages.append({"role": "user", "content": text})
        elif message.role == "assistant" and message.tool_calls:
            calls = "\n".join(
                json.dumps({"tool": c.name, "arguments": c.arguments}, ensure_ascii=False) for c in message.tool_calls
            )
            content = (message.content + "\n" if message.content else "") + calls
            messages.append({"role": "assistant", "content": content})
        else:
            messages.append({"role": message.role, "content": message.content})
        previous = message.role
    if previous == "tool" and question:
        # Restated after the results: a small model otherwise forgets the question and calls on.
        messages[-1]["content"] += f"\n\nAnswer my question with this result: {question}"
    if instructions:
        if messages and messages[0]["role"] == "system":
            messages[0] = {"role": "system", "content": f"{messages[0]['content']}\n\n{instructions}"}
        else:
            messages.insert(0, {"role": "system", "content": instructions})
    return messages


def parse_constrained(text: str, plan: Plan, finish_reason: str, max_tokens: int | None) -> Message:
    """The constrained output as a message: the JSON text, a tool call or an answer."""
    if not plan.tools:
        return Message.assistant(text)
    try:
        # Not strict: the grammar lets a raw newline into a string, which strict JSON refuses.
        value = json.loads(text, strict=False)
    except json.JSONDecodeError:
        if finish_reason == "length":
            partial = partial_answer(text) if plan.answer_schema == {"type": "string"} else None
            if partial is not None:
                return Message.assistant(partial)
            raise BadRequest(
                f"the local model's tool call was cut off by max_tokens={max_tokens} before it was complete; "
                "allow more tokens",
                provider="local",
            ) from None
        raise ProviderError(f"the local model produced malformed JSON despite the grammar: {text[:200]!r}") from None
    if "tool" in value:
        arguments = value.get("arguments")
        return Message.assistant(
            "", (ToolCall(f"call_{next(_call_ids)}", value["tool"], arguments if isinstance(arguments, dict) else {}),)
        )
    answer = value.get("answer", "")
    return Message.assistant(answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False))


def partial_answer(text: str) -> str | None:
    """The answer text of `{"answer": "...` cut off mid-string, or None."""
    head = text.lstrip()
    prefix = '{"answer":'
    if not head.replace(" ", "").startswith(prefix):
        return None
    start = head.find('"', head.find(":") + 1)
    if start < 0:
        return None
    body = head[start + 1 :]
    for trim in range(min(len(body), 6) + 1):  # drop a dangling escape sequence at the cut
        try:
            return json.loads('"' + body[: len(body) - trim] + '"')
        except json.JSONDecodeError:
            continue
    return None


def compile_grammar(llama: Any, schema: dict[str, Any]) -> Any:
    """A llama.cpp grammar for a JSON schema, checked against `llama`'s vocabulary (blocking)."""
    import llama_cpp
    from llama_cpp.llama_grammar import LlamaGrammar

    try:
        grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except Exception as exc:
        raise BadRequest(
            f"cannot constrain the local model to this JSON schema: {type(exc).__name__}: {exc}",
            provider="local",
        ) from exc
    # An invalid grammar makes llama.cpp return no sampler, and using it would crash the process.
    sampler = llama_cpp.llama_sampler_init_grammar(
        llama._model.vocab, grammar._grammar.encode(), grammar._root.encode()
    )
    if not sampler:
        raise BadRequest("llama.cpp rejected the grammar made from this JSON schema", provider="local")
    llama_cpp.llama_sampler_free(sampler)
    return grammar
