"""Between A2A message parts and a workflow's inputs and outputs.

A message's data part (a JSON object) gives inputs by name; its text goes to the one input
that is still needed (the only input, or the only required one, or the one a waiting run
waits for). Outputs become an artifact with a data part (all outputs) and, for a single text
output, a text part too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...core.data_units import MISSING
from ..errors import ProtocolError

if TYPE_CHECKING:
    from a2a.types import Message, Part

    from ...core.steps import Step


class InvalidInput(ProtocolError):
    """A message that does not give the inputs a workflow needs."""


def message_inputs(message: Message, step: Step, *, waiting_for: Sequence[str] = ()) -> dict[str, Any]:
    """The inputs a message gives `step` (see the module docstring)."""
    from a2a.helpers.proto_helpers import get_data_parts, get_text_parts

    values: dict[str, Any] = {}
    for data in get_data_parts(list(message.parts)):
        if not isinstance(data, Mapping):
            raise InvalidInput("a data part must be a JSON object of input values")
        values.update(data)
    text = "\n".join(get_text_parts(list(message.parts)))
    if text:
        target = _text_target(step, values, waiting_for)
        values[target] = text
    unknown = [name for name in values if name not in step.inputs]
    if unknown:
        raise InvalidInput(
            f"{step.name!r} has no input {', '.join(map(repr, unknown))} (inputs: {', '.join(step.inputs) or 'none'})"
        )
    if not values:
        raise InvalidInput("the message has no text and no data part")
    return values


def _text_target(step: Step, given: Mapping[str, Any], waiting_for: Sequence[str]) -> str:
    open_ = [name for name in waiting_for if name not in given]
    if len(open_) >= 1:
        return open_[0]
    names = [name for name in step.inputs if name not in given]
    required = [name for name in names if step.inputs[name].default is MISSING]
    if len(names) == 1:
        return names[0]
    if len(required) == 1:
        return required[0]
    for preferred in ("message", "text", "prompt", "query", "question"):
        if preferred in names:
            return preferred
    raise InvalidInput(
        f"a text part cannot be matched to one input of {step.name!r} (inputs: {', '.join(step.inputs) or 'none'}); "
        "send a data part with the inputs by name"
    )


def output_parts(outputs: Mapping[str, Any]) -> list[Part]:
    """An artifact's parts for a run's outputs: all of them as data, a single text also as text."""
    from a2a.helpers.proto_helpers import new_data_part, new_text_part

    parts = []
    values = list(outputs.values())
    if len(values) == 1 and isinstance(values[0], str):
        parts.append(new_text_part(values[0]))
    parts.append(new_data_part(_jsonable(dict(outputs))))
    return parts


def _jsonable(value: Any) -> Any:
    from ...llm.tools import to_text

    return json.loads(to_text(value))


def parts_text(parts: Sequence[Part]) -> str:
    """The text of parts (data parts as JSON), for a caller that wants one string."""
    chunks = []
    for part in parts:
        if part.HasField("text"):
            chunks.append(part.text)
        elif part.HasField("data"):
            from google.protobuf.json_format import MessageToDict

            chunks.append(json.dumps(MessageToDict(part.data), ensure_ascii=False))
    return "\n".join(chunks)
