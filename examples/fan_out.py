"""Fan-out / fan-in: three analyses of one text run in parallel, a join step combines them.

`fan_out.yaml` declares the same workflow.
"""

from __future__ import annotations

import asyncio

import nanobrain as nb

POSITIVE = {"good", "great", "love", "excellent", "happy", "fast"}
NEGATIVE = {"bad", "slow", "hate", "poor", "sad", "broken"}


@nb.step
async def word_count(text: str) -> int:
    return len(text.split())


@nb.step
async def sentiment(text: str) -> str:
    words = {w.strip(".,!?").lower() for w in text.split()}
    score = len(words & POSITIVE) - len(words & NEGATIVE)
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


@nb.step
def keywords(text: str, top: int = 3) -> list[str]:
    """The longest distinct words (a sync step: the engine calls it directly)."""
    words = sorted({w.strip(".,!?").lower() for w in text.split()}, key=lambda w: (-len(w), w))
    return words[:top]


@nb.step
def summary(words: int, mood: str, keywords: list[str]) -> str:
    """The join: runs once all three analyses have delivered."""
    return f"{words} words, {mood}, about {', '.join(keywords)}"


def build() -> nb.Workflow:
    workflow = nb.Workflow("fan_out", inputs={"text": str}, outputs={"summary": str})
    for analysis in (word_count, sentiment, keywords):
        workflow.add(analysis)
        workflow.link("inputs.text", f"{analysis.name}.text")
    workflow.add(summary)
    workflow.link("word_count.result", "summary.words")
    workflow.link("sentiment.result", "summary.mood")
    workflow.link("keywords.result", "summary.keywords")
    workflow.link("summary.result", "outputs.summary")
    return workflow


if __name__ == "__main__":
    print(asyncio.run(build().run(text="NanoBrain is fast and I love excellent engineering")))
