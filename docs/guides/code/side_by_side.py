"""The small workflow of the "coming from another framework" pages, in NanoBrain.

Normalize a text; a question goes to `answer`, anything else to `shout`. The two conditional
links make the router; both branches write the same workflow output.
"""

from __future__ import annotations

import asyncio

import nanobrain as nb


@nb.step
def normalize(text: str) -> str:
    return " ".join(text.split())


@nb.step
def shout(text: str) -> str:
    return text.upper() + "!"


@nb.step
def answer(text: str) -> str:
    return f"You asked: {text}"


def is_question(text: str) -> bool:
    return text.endswith("?")


def is_statement(text: str) -> bool:
    return not is_question(text)


def build() -> nb.Workflow:
    wf = nb.Workflow("router", inputs={"text": str}, outputs={"result": str})
    for step in (normalize, shout, answer):
        wf.add(step)
    wf.link("inputs.text", "normalize.text")
    wf.link("normalize.result", "answer.text", when=is_question)
    wf.link("normalize.result", "shout.text", when=is_statement)
    wf.link("shout.result", "outputs.result")
    wf.link("answer.result", "outputs.result")
    return wf


if __name__ == "__main__":
    workflow = build()
    print(asyncio.run(workflow.run(text="  hello   there ")))  # {'result': 'HELLO THERE!'}
    print(asyncio.run(workflow.run(text=" is it   on? ")))  # {'result': 'You asked: is it on?'}
