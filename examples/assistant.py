"""An agent with two tools. The model comes from NANOBRAIN_MODEL (default: the bundled local model).

`assistant.yaml` declares the same workflow. The agent must call a tool before it answers
(`tool_choice="required"`): the bundled 135M model cannot tell by itself when a tool would help.
With a capable model it calls the tools over several rounds; the tests drive it with the scripted model.
"""

from __future__ import annotations

import asyncio

import nanobrain as nb
from nanobrain.agents.agent import Agent


def convert_temperature(celsius: float) -> float:
    """Convert a temperature from Celsius to Fahrenheit.

    Args:
        celsius: degrees Celsius
    """
    return round(celsius * 9 / 5 + 32, 2)


def word_count(text: str) -> int:
    """Count the words in a text.

    Args:
        text: the text to count
    """
    return len(text.split())


SYSTEM = "You are a concise assistant. Use the tools when they help; answer in one sentence."


def build(model: object = None) -> nb.Workflow:
    agent = Agent("assistant", model=model, system=SYSTEM, tools=[convert_temperature, word_count],
                  tool_choice="required", max_rounds=4, max_tokens=128)
    return nb.Workflow.sequence(agent, name="assistant")


if __name__ == "__main__":
    print(asyncio.run(build().run(message="What is 21 degrees Celsius in Fahrenheit?")))
