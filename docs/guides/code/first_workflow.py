"""Your first workflow, in Python: `first_workflow.yaml` is the same workflow in YAML."""

from __future__ import annotations

import asyncio

import nanobrain as nb


@nb.step
def normalize(text: str) -> str:
    """Collapse runs of whitespace."""
    return " ".join(text.split())


@nb.step
def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper() + "!"


def build() -> nb.Workflow:
    wf = nb.Workflow("first", inputs={"text": str}, outputs={"result": str})
    wf.add(normalize)
    wf.add(shout)
    wf.link("inputs.text", "normalize.text")
    wf.link("normalize.result", "shout.text")
    wf.link("shout.result", "outputs.result")
    return wf


if __name__ == "__main__":
    print(asyncio.run(build().run(text="  hello   nanobrain ")))  # {'result': 'HELLO NANOBRAIN!'}
