"""Human in the loop: draft a release note, wait for a person's approval, then publish.

Built in Python; `approval.yaml` is the same in YAML. Run it durable, so that the wait can
outlast the process:

    nanobrain run examples/approval.yaml --durable --run-id r1 --input change="faster joins"
    nanobrain runs send r1 --input approval=yes
"""

from __future__ import annotations

import asyncio

import nanobrain as nb


@nb.step
def draft(change: str) -> str:
    """Write the note."""
    return f"Release note: {change.strip()}."


@nb.step
def publish(note: str, approval: str) -> str:
    """Publish when approved; otherwise say who stopped it."""
    if approval.strip().lower() in ("yes", "y", "approved"):
        return f"PUBLISHED {note}"
    return f"held back ({approval.strip()}): {note}"


def build() -> nb.Workflow:
    wf = nb.Workflow(
        "approval",
        inputs={"change": str, "approval": str},
        outputs={"result": str},
        description="Draft a release note, wait for approval, publish.",
    )
    wf.add(draft)
    wf.add(publish)
    wf.link("inputs.change", "draft.change")
    wf.link("draft.result", "publish.note")
    wf.link("inputs.approval", "publish.approval")
    wf.link("publish.result", "outputs.result")
    return wf


if __name__ == "__main__":
    print(asyncio.run(build().run(change="faster joins", approval="yes")))
