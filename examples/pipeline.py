"""A linear text pipeline: normalize -> count words -> report. Built in Python; `pipeline.yaml` is the same in YAML."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

import nanobrain as nb


class Stats(BaseModel):
    words: int
    characters: int


@nb.step
def normalize(text: str) -> str:
    """Collapse whitespace and trim."""
    return " ".join(text.split())


@nb.step
async def count(text: str) -> Stats:
    """Count words and characters (two outputs, from the model's fields)."""
    return Stats(words=len(text.split()), characters=len(text))


@nb.step
def report(words: int, characters: int) -> str:
    """Join both counts into one line."""
    return f"{words} words, {characters} characters"


def build() -> nb.Workflow:
    workflow = nb.Workflow("pipeline", inputs={"text": str}, outputs={"text": str, "report": str})
    workflow.chain(normalize, count, report)
    workflow.link("inputs.text", "normalize.text")
    workflow.link("normalize.result", "outputs.text")
    workflow.link("report.result", "outputs.report")
    return workflow


if __name__ == "__main__":
    print(asyncio.run(build().run(text="  Hello,   NanoBrain  ")))
