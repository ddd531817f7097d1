"""Durable runs in one process: journal, replay without re-executing, waiting runs, refusals.

The crash tests with real processes and `kill -9` are in test_durable_crash.py; the SQL store's
contract is tested in tests/infrastructure/test_journal_store.py.
"""

from __future__ import annotations

import asyncio
import pickle
from collections import Counter
from typing import Any

import pytest

from nanobrain import Manual, Step, Workflow, current_context, step
from nanobrain.core.durable import MemoryJournalStore
from nanobrain.core.journal import DONE, JournalError, RunCorrupt, RunJournal, RunLocked

executed: Counter[str] = Counter()


def mark() -> None:
    context = current_context()
    assert context is not None
    executed[context.idempotency_key] += 1


@pytest.fixture(autouse=True)
def _clear() -> None:
    executed.clear()


class Crash(Exception):
    """Stands for the process dying: raised by a step once, to stop a run mid-way."""


def chain(n: int = 5, crash_at: int | None = None) -> Workflow:
    steps = []
    for i in range(n):

        def body(x: int, _i: int = i) -> int:
            mark()
            if _i == crash_at and executed[current_context().idempotency_key] == 1:  # type: ignore[union-attr]
                raise Crash(f"killed in step {_i}")
            return x + 1

        body.__name__ = f"s{i}"
        steps.append(step(body))
    return Workflow.sequence(*steps, name="chain")


async def interrupt(wf: Workflow, store: MemoryJournalStore, run_id: str, **inputs: Any) -> None:
    """Run until the crash and leave the run as a killed process would: journaled, marked running."""
    with pytest.raises(Exception, match="killed"):
        await wf.run(inputs, durable=store, run_id=run_id)
    await store.update(run_id, status="running", error="")


async def test_a_durable_run_journals_and_a_finished_run_resumes_to_its_result():
    store = MemoryJournalStore()
    wf = chain()
    assert await wf.run(x=0, durable=store, run_id="r1") == {"result": 5}
    record = await store.get("r1")
    assert record is not None and record.status == "finished"
    assert await wf.resume("r1", durable=store) == {"result": 5}
    assert sum(executed.values()) == 5  # resuming a finished run executes nothing


async def test_resume_replays_completed_firings_and_reruns_the_one_in_flight():
    store = MemoryJournalStore()
    await interrupt(chain(crash_at=3), store, "r2", x=10)
    completed = {k for k, n in executed.items()}
    assert executed["r2/s3/1"] == 1  # the firing in flight ran once and died
    result = await chain(crash_at=3).resume("r2", durable=store)
    assert result == {"result": 15}
    for key in completed - {"r2/s3/1"}:
        assert executed[key] == 1, key  # completed firings did not run again
    assert executed["r2/s3/1"] == 2  # at-least-once for the step in flight
    assert executed["r2/s4/1"] == 1


async def test_fan_out_join_and_a_bounded_loop_resume_to_the_uninterrupted_result():
    class Join(Step):
        inputs = {"a": int, "b": int, "c": int}
        outputs = {"total": int}

        async def process(self, inputs: dict[str, Any]) -> dict[str, Any]:
            mark()
            return {"total": inputs["a"] + inputs["b"] + inputs["c"]}

    crash = {"armed": True}

    def branch(name: str, factor: int) -> Step:
        def body(x: int) -> int:
            mark()
            if name == "b" and crash["armed"]:
                crash["armed"] = False
                raise Crash("killed in branch b")
            return x * factor

        body.__name__ = name
        return step(body)

    def build() -> Workflow:
        wf = Workflow("fan", inputs={"x": int}, outputs={"total": int})
        for name, factor in (("a", 1), ("b", 2), ("c", 3)):
            wf.add(branch(name, factor))
            wf.link("inputs.x", f"{name}.x")
            wf.link(f"{name}.result", f"join.{name}")
        wf.add(Join("join"))
        wf.link("join.total", "outputs.total")
        return wf

    store = MemoryJournalStore()
    await interrupt(build(), store, "fan1", x=2)
    assert await build().resume("fan1", durable=store) == {"total": 12}
    assert executed["fan1/a/1"] == 1 and executed["fan1/c/1"] <= 1 and executed["fan1/join/1"] == 1

    @step
    def grow(items: list[str]) -> list[str]:
        mark()
        if len(items) == 7 and crash["loop"]:
            crash["loop"] = False
            raise Crash("killed in the loop")
        return [*items, f"item-{len(items):02d}"]

    crash["loop"] = True

    def loop() -> Workflow:
        wf = Workflow("loop", inputs={"items": list[str]}, outputs={"items": list[str]})
        wf.add(grow)
        wf.link("inputs.items", "grow.items")
        wf.link("grow.result", "grow.items", when=lambda v: len(v) < 12, max_iterations=20)
        wf.link("grow.result", "outputs.items", when=lambda v: len(v) >= 12)
        return wf

    await interrupt(loop(), store, "loop1", items=[])
    out = await loop().resume("loop1", durable=store)
    assert out == {"items": [f"item-{i:02d}" for i in range(12)]}
    assert max(executed[f"loop1/grow/{n}"] for n in range(1, 8)) == 1
    assert executed["loop1/grow/8"] == 2


async def test_a_growing_list_is_journaled_as_what_was_added():
    store = MemoryJournalStore()
    journal = RunJournal(store, "j")
    await store.create(__import__("nanobrain.core.journal", fromlist=["RunRecord"]).RunRecord("j", "w"))
    items: list[str] = []
    sizes = []
    for i in range(300):
        items.append(f"{i:020d}")
        before = journal.bytes
        journal.add(DONE, "grow", i + 1, {"result": items})
        sizes.append(journal.bytes - before)
    await journal.flush()
    assert max(sizes[10:]) < 120  # the 20-character item and framing, not the whole list
    replayed = RunJournal(store, "j").replay(await store.entries("j"))
    assert replayed[-1][3]["result"] == items
    assert replayed[0][3]["result"] == items[:1]


async def test_nested_workflows_resume_inside_without_repeating_inner_firings():
    crash = {"armed": True}

    @step
    def inner_a(x: int) -> int:
        mark()
        return x + 1

    @step
    def inner_b(x: int) -> int:
        mark()
        if crash["armed"]:
            crash["armed"] = False
            raise Crash("killed inside the nested workflow")
        return x * 10

    @step
    def after(x: int) -> int:
        mark()
        return x - 1

    def build() -> Workflow:
        inner = Workflow.sequence(inner_a, inner_b, name="inner")
        return Workflow.sequence(inner, after, name="outer")

    store = MemoryJournalStore()
    await interrupt(build(), store, "n1", x=1)
    assert await build().resume("n1", durable=store) == {"result": 19}
    assert executed["n1.inner.1/inner_a/1"] == 1
    assert executed["n1.inner.1/inner_b/1"] == 2
    assert executed["n1/after/1"] == 1


async def test_a_run_waiting_for_a_manual_step_finishes_when_fired_later():
    @step
    def draft(topic: str) -> str:
        mark()
        return f"draft about {topic}"

    @step
    def publish(text: str) -> str:
        mark()
        return text.upper()

    def build() -> Workflow:
        wf = Workflow("review", inputs={"topic": str}, outputs={"published": str})
        wf.add(draft)
        wf.add(publish.renamed("publish"))
        wf.steps["publish"].trigger = Manual()
        wf.link("inputs.topic", "draft.topic")
        wf.link("draft.result", "publish.text")
        wf.link("publish.result", "outputs.published")
        return wf

    store = MemoryJournalStore()
    assert await build().run(topic="owls", durable=store, run_id="w1") == {}
    record = await store.get("w1")
    assert record is not None and record.status == "waiting" and "publish" in record.where
    out = await build().resume("w1", durable=store, fire=["publish"])
    assert out == {"published": "DRAFT ABOUT OWLS"}
    assert (await store.get("w1")).status == "finished"  # type: ignore[union-attr]
    assert executed["w1/draft/1"] == 1


async def test_a_run_waiting_for_an_input_continues_when_it_is_sent():
    class Combine(Step):
        inputs = {"question": str, "approval": str}
        outputs = {"answer": str}

        async def process(self, inputs: dict[str, Any]) -> dict[str, Any]:
            mark()
            return {"answer": f"{inputs['question']}: {inputs['approval']}"}

    def build() -> Workflow:
        wf = Workflow("approve", inputs={"question": str, "approval": str}, outputs={"answer": str})
        wf.add(Combine("combine"))
        wf.link("inputs.question", "combine.question")
        wf.link("inputs.approval", "combine.approval")
        wf.link("combine.answer", "outputs.answer")
        return wf

    store = MemoryJournalStore()
    assert await build().run(question="ship it?", durable=store, run_id="a1") == {}
    assert (await store.get("a1")).where == "input approval"  # type: ignore[union-attr]
    assert await build().resume("a1", durable=store, send={"approval": "yes"}) == {"answer": "ship it?: yes"}


async def test_resume_refuses_a_changed_workflow_unless_forced():
    store = MemoryJournalStore()
    await interrupt(chain(crash_at=2), store, "c1", x=0)
    with pytest.raises(JournalError, match=r"step 's4' removed"):
        await chain(n=4, crash_at=2).resume("c1", durable=store)
    assert await chain(crash_at=2).resume("c1", durable=store) == {"result": 5}
    await interrupt(chain(crash_at=2), store, "c2", x=0)
    # Forced onto a shorter chain: the journaled steps replay, the new definition finishes.
    assert await chain(n=4, crash_at=2).resume("c2", durable=store, force=True) == {"result": 4}


async def test_a_corrupt_entry_marks_only_that_run_corrupt():
    store = MemoryJournalStore()
    await interrupt(chain(crash_at=2), store, "bad", x=0)
    await interrupt(chain(crash_at=2), store, "good", x=0)
    store._entries["bad"][1] = b"\x80\x05not a pickle"
    with pytest.raises(RunCorrupt, match="entry 1"):
        await chain().resume("bad", durable=store)
    assert (await store.get("bad")).status == "corrupt"  # type: ignore[union-attr]
    with pytest.raises(RunCorrupt, match="marked corrupt"):
        await chain().resume("bad", durable=store)
    assert await chain().resume("good", durable=store) == {"result": 5}


async def test_a_live_owner_holds_the_lease():
    store = MemoryJournalStore()
    await interrupt(chain(crash_at=1), store, "l1", x=0)
    await store.update("l1", owner="otherhost:1:abcd")  # another machine: assumed alive
    with pytest.raises(RunLocked, match="another process"):
        await chain().resume("l1", durable=store)


async def test_agent_model_calls_are_journaled_and_not_repeated_on_resume():
    from nanobrain.agents.agent import Agent
    from nanobrain.llm.scripted import ScriptedModel

    crash = {"armed": True}

    @step
    def deliver(reply: str) -> str:
        mark()
        if crash["armed"]:
            crash["armed"] = False
            raise Crash("killed after the model answered")
        return reply

    def build(model: ScriptedModel) -> Workflow:
        agent = Agent("agent", model=model)
        return Workflow.sequence(agent, deliver, name="ask")

    first = ScriptedModel(["the answer"])
    store = MemoryJournalStore()
    await interrupt(build(first), store, "m1", message="question")
    later = ScriptedModel([])  # would raise if called: its script is empty
    assert await build(later).resume("m1", durable=store) == {"result": "the answer"}
    assert executed["m1/deliver/1"] == 2


async def test_durability_off_costs_no_journal():
    wf = chain()
    run = wf.new_run()
    assert run.journal is None
    assert await wf.run(x=1) == {"result": 6}


async def test_the_journal_on_disk_is_never_behind_a_completed_firing():
    """Each DONE is flushed before the step's outputs move on: the next step never starts on a
    value the journal could lose."""
    store = MemoryJournalStore()
    seen_before_next: list[int] = []

    @step
    async def first(x: int) -> int:
        return x + 1

    @step
    async def second(x: int) -> int:
        entries = await store.entries("o1")
        seen_before_next.append(sum(1 for e in entries if pickle.loads(e)[0] == DONE))
        await asyncio.sleep(0)
        return x

    await Workflow.sequence(first, second).run(x=1, durable=store, run_id="o1")
    assert seen_before_next == [1]


async def test_a_yaml_workflow_declared_durable_journals_its_runs_and_records_its_file(tmp_path, monkeypatch):
    from nanobrain import load_workflow

    monkeypatch.setenv("NANOBRAIN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NANOBRAIN_DATABASE_URL", raising=False)
    (tmp_path / "steps_for_yaml.py").write_text("def shout(text: str) -> str:\n    return text.upper()\n")
    document = tmp_path / "durable.yaml"
    document.write_text(
        "name: loud\n"
        "durable: true\n"
        "inputs: {text: str}\n"
        "outputs: {result: str}\n"
        "steps:\n"
        "  shout: {function: 'steps_for_yaml:shout'}\n"
        "links:\n"
        "  - {from: inputs.text, to: shout.text}\n"
        "  - {from: shout.result, to: outputs.result}\n"
    )
    workflow = load_workflow(document)
    assert workflow.durable is True and workflow.source == str(document.resolve())
    assert await workflow.run(text="hi", run_id="yaml-1") == {"result": "HI"}
    from nanobrain.core.durable import default_store

    store = default_store()
    try:
        record = await store.get("yaml-1")
        assert record is not None and record.status == "finished" and record.source == str(document.resolve())
    finally:
        await store.aclose()  # type: ignore[attr-defined]
    assert await load_workflow(document).resume("yaml-1") == {"result": "HI"}


async def test_concurrent_flushes_reach_the_store_in_sequence_order():
    """A map's items (or concurrent firings) flush at once; a slow append must not be overtaken,
    or a crash could keep entry n+1 and lose entry n (the store reports that as corruption)."""
    from nanobrain.core.journal import FIRE, RunRecord

    class SlowFirstAppend(MemoryJournalStore):
        def __init__(self) -> None:
            super().__init__()
            self.appends: list[int] = []

        async def append(self, run_id: str, first_seq: int, entries: Any) -> None:
            if not self.appends and first_seq == 0:
                await asyncio.sleep(0.01)
            await super().append(run_id, first_seq, entries)  # refuses an entry out of order
            self.appends.append(first_seq)

    store = SlowFirstAppend()
    await store.create(RunRecord("r", "wf"))
    journal = RunJournal(store, "r")
    journal.add(FIRE, "a")
    first = asyncio.ensure_future(journal.flush())
    await asyncio.sleep(0)  # the first append is under way
    journal.add(FIRE, "b")
    await journal.flush()
    assert store.appends == [0, 1]  # returned only once its entry and every earlier one were stored
    await first
    assert len(await store.entries("r")) == 2
