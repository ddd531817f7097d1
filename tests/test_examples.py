"""Every example runs, in Python and in YAML, and both forms give the same answer."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import nanobrain as nb
from nanobrain.config import load_workflow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CASES = [
    ("pipeline", {"text": "  Hello,   NanoBrain  "}, {"text": "Hello, NanoBrain", "report": "2 words, 16 characters"}),
    (
        "fan_out",
        {"text": "NanoBrain is fast and I love excellent engineering"},
        {"summary": "8 words, positive, about engineering, excellent, nanobrain"},
    ),
    (
        "router",
        {"text": "I was charged twice, please refund"},
        {"reply": "[billing] We will look at your invoice: I was charged twice, please refund", "topic": "billing"},
    ),
]


@pytest.mark.parametrize(("name", "inputs", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_example_python_and_yaml_agree(name: str, inputs: dict, expected: dict) -> None:
    module = importlib.import_module(f"examples.{name}")
    from_python = await module.build().run(**inputs)
    from_yaml = await load_workflow(EXAMPLES / f"{name}.yaml").run(**inputs)
    assert from_python == expected
    assert from_yaml == expected


@pytest.mark.parametrize(
    ("text", "topic"),
    [("the app crashed with an error", "technical"), ("hello there", "general"), ("refund my invoice", "billing")],
)
async def test_router_sends_each_ticket_to_exactly_one_handler(text: str, topic: str) -> None:
    events = [e async for e in load_workflow(EXAMPLES / "router.yaml").stream(text=text)]
    handlers = [e.step for e in events if isinstance(e, nb.StepStarted) and e.step != "classify"]
    assert handlers == [topic]


async def test_loop_converges_in_python_and_yaml() -> None:
    from examples import loop

    for workflow in (loop.build(), load_workflow(EXAMPLES / "loop.yaml")):
        result = await workflow.run(number=2.0)
        assert result["root"] == pytest.approx(2**0.5, rel=1e-9)
        assert 1 <= result["rounds"] < 100


async def test_loop_bound_stops_a_run_that_would_go_on() -> None:
    from examples import loop

    with pytest.raises(nb.StepError) as caught:
        await loop.build(max_rounds=2).run(number=1e12)
    assert isinstance(caught.value.__cause__, nb.CycleLimitExceeded)
    assert "bound of 2 iteration" in str(caught.value.__cause__)


async def test_approval_waits_for_a_person_in_python_and_yaml() -> None:
    from examples import approval

    from nanobrain.core.durable import MemoryJournalStore

    for workflow in (approval.build(), load_workflow(EXAMPLES / "approval.yaml")):
        store = MemoryJournalStore()
        assert await workflow.run(change="faster joins", durable=store, run_id="r1") == {}
        record = await store.get("r1")
        assert record is not None and (record.status, record.where) == ("waiting", "input approval")
        result = await workflow.resume("r1", durable=store, send={"approval": "yes"})
        assert result == {"result": "PUBLISHED Release note: faster joins."}
