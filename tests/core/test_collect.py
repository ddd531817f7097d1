"""Collecting joins and the meaning of several links into one input; reusing one step."""

from __future__ import annotations

import asyncio

import pytest

from nanobrain import OnUpdate, Workflow, WorkflowValidationError, step


def branches(n: int) -> Workflow:
    """`inputs.x` fanned out to n branches `b0..`, each adding its number."""
    wf = Workflow("fan", inputs={"x": int}, outputs={"total": None})
    for i in range(n):

        async def branch(x: int, _i: int = i) -> int:
            await asyncio.sleep(0.001 * (n - _i))  # later branches finish first
            return x + _i

        wf.add(branch, name=f"b{i}")
        wf.link("inputs.x", f"b{i}.x")
    return wf


@step
def add_up(values: list[int]) -> int:
    return sum(values)


@step
def listed(values: list[int]) -> list[int]:
    return values


async def test_a_collecting_join_gets_one_list_in_link_order():
    wf = branches(3)
    wf.add(listed)
    wf.collect("listed.values", "b0.result", "b1.result", "b2.result")
    wf.link("listed.result", "outputs.total")
    assert await wf.run(x=10) == {"total": [10, 11, 12]}


async def test_the_issue_example_sums_every_branch_not_the_last_one():
    wf = branches(3)
    wf.add(add_up)
    wf.collect("add_up.values", *[f"b{i}.result" for i in range(3)])
    wf.link("add_up.result", "outputs.total")
    assert await wf.run(x=0) == {"total": 3}


async def test_collect_as_dict_keys_values_by_source_step():
    @step
    def keyed(values: dict[str, int]) -> dict[str, int]:
        return values

    wf = branches(2)
    wf.add(keyed)
    wf.collect("keyed.values", "b1.result", "b0.result", as_dict=True)
    wf.link("keyed.result", "outputs.total")
    assert await wf.run(x=5) == {"total": {"b1": 6, "b0": 5}}


async def test_a_collecting_join_fires_once_per_round_and_queues_a_branch_that_runs_ahead():
    seen: list[list[int]] = []

    @step(trigger=OnUpdate())
    def record(values: list[int]) -> None:
        seen.append(values)

    wf = Workflow("w", inputs={"a": int, "b": int})
    wf.add(record)
    wf.link("inputs.a", "record.values", fan_in="collect")
    wf.link("inputs.b", "record.values", fan_in="collect")
    async with wf.start() as handle:
        await handle.send(a=1)
        await handle.send(a=2)  # runs ahead of b: held, not overwritten
        assert handle.run.state()["steps"]["record"]["collecting"] == {"values": [[1, 2], []]}
        await handle.send(b=10)
        await handle.send(b=20)
        await handle.idle()
    assert seen == [[1, 10], [2, 20]]


def test_several_plain_links_into_one_input_are_an_error_with_the_fix():
    wf = branches(3)
    wf.add(add_up)
    for i in range(3):
        wf.link(f"b{i}.result", "add_up.values")
    wf.link("add_up.result", "outputs.total")
    with pytest.raises(WorkflowValidationError) as caught:
        wf.validate()
    [problem] = [p for p in caught.value.problems if p.where == "links[-> add_up.values]"]
    assert "3 links feed 'add_up.values' (b0.result, b1.result, b2.result)" in problem.message
    assert "fan_in='collect'" in problem.message and "fan_in='merge'" in problem.message
    # Each link's type mismatch (int into list[int]) points the same way.
    mismatch = next(p for p in caught.value.problems if "type mismatch" in p.message)
    assert mismatch.message.endswith("(to collect values from several links into it, link with fan_in='collect')")


async def test_merge_fires_once_per_value():
    seen: list[int] = []

    @step(trigger=OnUpdate())
    def each(value: int) -> None:
        seen.append(value)

    wf = branches(3)
    wf.outputs.clear()
    wf.add(each)
    for i in range(3):
        wf.link(f"b{i}.result", "each.value", fan_in="merge")
    await wf.run(x=0)
    assert sorted(seen) == [0, 1, 2]


def test_mixed_fan_in_and_collecting_into_a_workflow_output_are_errors():
    wf = branches(2)
    wf.add(add_up)
    wf.link("b0.result", "add_up.values", fan_in="collect")
    wf.link("b1.result", "add_up.values", fan_in="merge")
    wf.link("add_up.result", "outputs.total", fan_in="collect")
    messages = sorted(str(p) for p in wf.problems() if "type mismatch" not in p.message)
    assert messages == [
        "links[-> add_up.values]: the links into 'add_up.values' (b0.result, b1.result) mix fan_in collect, merge: "
        "give them all one",
        "links[add_up.result -> outputs.total]: only a step input can collect values",
    ]


def test_a_collected_item_is_checked_against_the_list_item_type():
    @step
    def text() -> str:
        return "x"

    wf = branches(1)
    wf.add(text)
    wf.add(add_up)
    wf.collect("add_up.values", "b0.result", "text.result")
    wf.link("add_up.result", "outputs.total")
    [problem] = wf.problems()
    assert problem.message == (
        "type mismatch: text.result gives str but add_up.values expects int (each item of the collected value)"
    )


def test_routed_branches_and_loops_merge_without_saying_so():
    @step
    def pick(x: int) -> int:
        return x

    wf = Workflow("w", inputs={"x": int}, outputs={"y": int})
    wf.add(pick)
    wf.add(add_up.renamed("a"))
    wf.link("inputs.x", "pick.x", when=lambda v: v > 0)
    wf.link("inputs.x", "pick.x", when=lambda v: v <= 0, transform=lambda v: -v)
    wf.link("pick.result", "outputs.y")
    assert [p for p in wf.problems() if "links feed" in p.message] == []


@step
def add(x: int) -> int:
    return x + 1


async def test_one_step_used_ten_times_in_a_sequence_gets_ten_names():
    wf = Workflow.sequence(*[add] * 10)
    assert list(wf.steps) == ["add", *[f"add_{i}" for i in range(2, 11)]]
    assert await wf.run(x=0) == {"result": 10}


async def test_a_repeated_plain_function_in_a_chain_gets_its_own_names_too():
    def inc(x: int) -> int:
        return x + 1

    wf = Workflow.sequence(inc, inc, inc)
    assert list(wf.steps) == ["inc", "inc_2", "inc_3"]
    assert await wf.run(x=1) == {"result": 4}


def test_linking_a_step_to_itself_points_to_renaming():
    wf = Workflow("w", inputs={"x": int}, outputs={"result": int})
    wf.add(add)
    wf.link("inputs.x", "add.x")
    wf.link("add.result", "add.x")
    wf.link("add.result", "outputs.result")
    [problem] = wf.problems()
    assert "add.renamed" not in problem.message  # the hint names the generic method
    assert "step.renamed('add_2') or workflow.add(step, name='add_2')" in problem.message
