"""A router: a classifier's result travels along the conditional link whose predicate matches.

`router.yaml` declares the same workflow.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

import nanobrain as nb


class Ticket(BaseModel):
    topic: str
    text: str


@nb.step(outputs="ticket")  # one output holding the whole model, not one per field
def classify(text: str) -> Ticket:
    """Pick a topic by keyword; returns one `ticket` output."""
    lowered = text.lower()
    if any(w in lowered for w in ("invoice", "refund", "charge", "price")):
        topic = "billing"
    elif any(w in lowered for w in ("error", "crash", "bug", "install")):
        topic = "technical"
    else:
        topic = "general"
    return Ticket(topic=topic, text=text)


def is_billing(ticket: Ticket) -> bool:
    return ticket.topic == "billing"


def is_technical(ticket: Ticket) -> bool:
    return ticket.topic == "technical"


def is_general(ticket: Ticket) -> bool:
    return ticket.topic == "general"


@nb.step
def billing(ticket: Ticket) -> str:
    return f"[billing] We will look at your invoice: {ticket.text}"


@nb.step
def technical(ticket: Ticket) -> str:
    return f"[technical] Please send the error log for: {ticket.text}"


@nb.step
def general(ticket: Ticket) -> str:
    return f"[general] Thanks for writing: {ticket.text}"


def build() -> nb.Workflow:
    workflow = nb.Workflow("router", inputs={"text": str}, outputs={"reply": str, "topic": str})
    workflow.add(classify)
    workflow.link("inputs.text", "classify.text")
    for handler, predicate in ((billing, is_billing), (technical, is_technical), (general, is_general)):
        workflow.add(handler)
        workflow.link("classify.ticket", f"{handler.name}.ticket", when=predicate)
        workflow.link(f"{handler.name}.result", "outputs.reply")
    workflow.link("classify.ticket", "outputs.topic", transform=topic_of)
    return workflow


def topic_of(ticket: Ticket) -> str:
    return ticket.topic


if __name__ == "__main__":
    print(asyncio.run(build().run(text="I was charged twice, please refund")))
