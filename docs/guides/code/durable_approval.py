"""Durable runs and a human in the loop: a run waits for approval, across process restarts.

Part one starts a durable run without the `approval` input: the draft is written and
journaled, then the run waits. Part two (in a real deployment: another process, hours later)
sends the approval; the journaled draft is replayed, not written again.
"""

from __future__ import annotations

import asyncio

import nanobrain as nb

drafts_written: list[str] = []  # what `draft` really did: replayed firings do not run again


@nb.step
def draft(change: str) -> str:
    """Write the note (a side effect: keyed by the firing's idempotency key)."""
    drafts_written.append(nb.current_context().idempotency_key)
    return f"Release note: {change.strip()}."


@nb.step
def publish(note: str, approval: str) -> str:
    """Publish when approved."""
    return f"PUBLISHED {note}" if approval == "yes" else f"held back: {note}"


def build() -> nb.Workflow:
    wf = nb.Workflow("approval", inputs={"change": str, "approval": str}, outputs={"result": str}, durable=True)
    wf.add(draft)
    wf.add(publish)
    wf.link("inputs.change", "draft.change")
    wf.link("draft.result", "publish.note")
    wf.link("inputs.approval", "publish.approval")
    wf.link("publish.result", "outputs.result")
    return wf


async def start(run_id: str) -> dict[str, object]:
    """Process one: start the run; it stops waiting for `approval` (journal under NANOBRAIN_HOME)."""
    return await build().run(change="faster joins", run_id=run_id)


async def approve(run_id: str) -> dict[str, object]:
    """Process two: a fresh workflow object resumes the run with the person's answer."""
    return await build().resume(run_id, send={"approval": "yes"})


if __name__ == "__main__":
    print(asyncio.run(start("guide-1")))    # {} : waiting for input approval
    print(asyncio.run(approve("guide-1")))  # {'result': 'PUBLISHED Release note: faster joins.'}
