"""An agent with a tool and structured output.

`build(model)` takes any model: a model string (`"local"`, `"openai:gpt-4o-mini"`, ...) or a
provider object. The test passes a `ScriptedModel`, which answers from a script, so this
guide runs offline and gives the same answer every time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

import nanobrain as nb
from nanobrain.agents.agent import Agent
from nanobrain.llm import ScriptedModel, call
from nanobrain.llm.tools import tool


@tool
def to_fahrenheit(celsius: float) -> float:
    """Convert a temperature from Celsius to Fahrenheit.

    Args:
        celsius: the temperature in degrees Celsius.
    """
    return celsius * 9 / 5 + 32


class Reading(BaseModel):
    """What the agent must answer with: checked, and sent back for correction if invalid."""

    celsius: float
    fahrenheit: float


def build(model: Any) -> nb.Workflow:
    agent = Agent(
        "converter",
        model=model,
        system="Convert temperatures with the tool; answer as JSON.",
        tools=[to_fahrenheit],
        output_type=Reading,
    )
    wf = nb.Workflow("temperatures", inputs={"message": str}, outputs={"reading": Reading})
    wf.add(agent)
    wf.link("inputs.message", "converter.message")
    wf.link("converter.reply", "outputs.reading")
    return wf


def scripted() -> ScriptedModel:
    """The model's part, scripted: first it calls the tool, then it answers."""
    return ScriptedModel([call("to_fahrenheit", celsius=21), {"celsius": 21, "fahrenheit": 69.8}])


if __name__ == "__main__":
    print(asyncio.run(build(scripted()).run(message="What is 21 C in Fahrenheit?")))
