"""Workflows that the A2A tests serve (importable by child processes too)."""

from __future__ import annotations

import asyncio

import nanobrain as nb


@nb.step
async def speak(text: str) -> str:
    """Stream the answer word by word as tokens, then return it."""
    context = nb.current_context()
    words = text.upper().split()
    for word in words:
        if context is not None:
            context.token(word + " ")
        await asyncio.sleep(0)
    return " ".join(words) + "!"


def shout() -> nb.Workflow:
    workflow = nb.Workflow.sequence(speak, name="shout")
    workflow.description = "Shout a text back, word by word"
    return workflow


@nb.step
async def drip(text: str, delay: float = 0.2) -> str:
    """Emit one token per character, slowly (for cancel and resubscribe)."""
    context = nb.current_context()
    for char in text:
        await asyncio.sleep(delay)
        if context is not None:
            context.token(char)
    return text


def slow() -> nb.Workflow:
    workflow = nb.Workflow.sequence(drip, name="slow")
    workflow.description = "Echo a text slowly"
    return workflow


@nb.step
def greet(person: str, message: str) -> str:
    return f"{message}, {person}"


def two_inputs() -> nb.Workflow:
    workflow = nb.Workflow(name="greeter", inputs={"person": str, "message": str}, outputs={"greeting": str})
    workflow.add(greet)
    workflow.link("inputs.person", "greet.person")
    workflow.link("inputs.message", "greet.message")
    workflow.link("greet.result", "outputs.greeting")
    workflow.description = "Greet someone"
    return workflow


@nb.step
def explode(text: str) -> str:
    raise RuntimeError(f"cannot take {text!r}")


def failing() -> nb.Workflow:
    return nb.Workflow.sequence(explode, name="failing")
