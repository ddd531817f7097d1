"""Build-time validation: every problem is reported, and each names where it is and what is wrong."""

from __future__ import annotations

import gc

import pytest

from nanobrain import Manual, Problem, Step, Workflow, WorkflowValidationError, step
from nanobrain.core.links import Link


@step
def parse(text: str) -> int:
    return int(text)


@step
def shout(text: str) -> str:
    return text.upper()


@step
def double(n: int) -> int:
    return n * 2


def messages(wf: Workflow) -> list[str]:
    return [str(p) for p in wf.problems()]


def test_valid_workflow_has_no_problems_and_validate_returns_it():
    wf = Workflow.sequence(parse, double)
    assert wf.problems() == []
    assert wf.validate() is wf


def test_unconnected_required_input_names_the_step_and_the_input():
    wf = Workflow("w", inputs={"text": str}, outputs={"n": int}, steps=[parse, double])
    wf.link("inputs.text", "parse.text")
    wf.link("double.result", "outputs.n")
    # parse.result goes nowhere and double.n is never fed.
    problems = wf.problems()
    unconnected = [p for p in problems if p.where == "steps.double.inputs.n"]
    assert len(unconnected) == 1
    assert "required input 'n' of step 'double' is not connected" in unconnected[0].message
    assert "'double.n'" in unconnected[0].message


def test_optional_inputs_need_no_link():
    @step
    def greet(name: str, punctuation: str = "!") -> str:
        return name + punctuation

    wf = Workflow.sequence(greet)
    assert wf.problems() == []


def test_type_mismatch_across_a_link_names_both_ends_and_types():
    wf = Workflow("w", inputs={"text": str}, outputs={"n": int}, steps=[shout, double])
    wf.link("inputs.text", "shout.text")
    wf.link("shout.result", "double.n")
    wf.link("double.result", "outputs.n")
    [problem] = wf.problems()
    assert problem.where == "links[shout.result -> double.n]"
    assert problem.message == "type mismatch: shout.result gives str but double.n expects int"


def test_type_mismatch_into_a_workflow_output_and_from_a_workflow_input():
    wf = Workflow("w", inputs={"n": int}, outputs={"text": str}, steps=[shout])
    wf.link("inputs.n", "shout.text")
    wf.link("shout.result", "outputs.text")
    assert messages(wf) == [
        "links[inputs.n -> shout.text]: type mismatch: inputs.n gives int but shout.text expects str"
    ]

    wf2 = Workflow("w2", inputs={"n": int}, outputs={"text": str}, steps=[double])
    wf2.link("inputs.n", "double.n")
    wf2.link("double.result", "outputs.text")
    assert "double.result gives int but outputs.text expects str" in messages(wf2)[0]


def test_compatible_types_are_accepted():
    @step
    def ratio(x: float) -> float:
        return x / 2

    @step
    def maybe(x: int | None) -> list[int]:
        return [x or 0]

    @step
    def total(values: list[int]) -> int:
        return sum(values)

    wf = Workflow("w", inputs={"n": int}, outputs={"half": float, "total": int}, steps=[ratio, maybe, total])
    wf.link("inputs.n", "ratio.x")  # int flows into float
    wf.link("inputs.n", "maybe.x")  # int flows into int | None
    wf.link("maybe.result", "total.values")
    wf.link("ratio.result", "outputs.half")
    wf.link("total.result", "outputs.total")
    assert wf.problems() == []


def test_annotated_transform_decides_the_carried_type():
    def to_text(n: int) -> str:
        return str(n)

    wf = Workflow("w", inputs={"n": int}, outputs={"n": int}, steps=[double])
    wf.link("inputs.n", "double.n", transform=to_text)
    wf.link("double.result", "outputs.n")
    assert "type mismatch: inputs.n gives str but double.n expects int" in messages(wf)[0]

    wf_ok = Workflow("w", inputs={"text": str}, outputs={"n": int}, steps=[double])
    wf_ok.link("inputs.text", "double.n", transform=lambda s: len(s))  # unannotated: cannot tell
    wf_ok.link("double.result", "outputs.n")
    assert wf_ok.problems() == []


def test_unknown_step_unit_and_workflow_ports_in_links():
    wf = Workflow("w", inputs={"text": str}, outputs={"n": int}, steps=[parse])
    wf.link("inputs.text", "parse.text")
    wf.link("parse.result", "outputs.n")
    wf.link("parse.result", "ghost.x")
    wf.link("parse.reslt", "outputs.n")
    wf.link("inputs.txt", "parse.text")
    wf.link("parse.result", "outputs.m")
    found = messages(wf)
    assert "links[parse.result -> ghost.x]: unknown step 'ghost' in 'ghost.x' (steps: parse)" in found
    assert (
        "links[parse.reslt -> outputs.n]: step 'parse' output 'reslt' does not exist in 'parse.reslt' (known: result)"
        in found
    )
    assert "links[inputs.txt -> parse.text]: workflow input 'txt' does not exist in 'inputs.txt' (known: text)" in found
    assert "links[parse.result -> outputs.m]: workflow output 'm' does not exist in 'outputs.m' (known: n)" in found
    assert len(found) == 4


def test_links_into_workflow_inputs_or_out_of_outputs_are_refused():
    wf = Workflow("w", inputs={"x": int}, outputs={"y": int}, steps=[double])
    wf.link("inputs.x", "double.n")
    wf.link("double.result", "outputs.y")
    wf.link("double.result", "inputs.x")
    wf.link("outputs.y", "double.n")
    found = " | ".join(messages(wf))
    assert "'inputs.x': a link cannot write into a workflow input" in found
    assert "'outputs.y': a link cannot read from a workflow output" in found


def test_reserved_step_names_and_unproduced_outputs():
    wf = Workflow("w", inputs={"x": int}, outputs={"y": int, "z": int})
    wf.add(double, name="inputs")
    found = messages(wf)
    assert any(m.startswith("steps.inputs: 'inputs' is reserved") for m in found)
    assert "outputs.y: workflow output 'y' is not produced by any link" in found
    assert "outputs.z: workflow output 'z' is not produced by any link" in found


def test_unreachable_step_is_reported():
    @step
    def orphan(n: int) -> int:
        return n

    wf = Workflow.sequence(parse, double)
    wf.add(orphan)
    wf.link("orphan.result", "double.n")  # orphan feeds the chain but nothing feeds orphan
    found = messages(wf)
    assert any(m.startswith("steps.orphan: step 'orphan' is unreachable") for m in found)
    assert any("required input 'n' of step 'orphan' is not connected" in m for m in found)


def test_step_fed_only_by_an_unreachable_cycle_is_unreachable():
    @step
    def a(x: int = 0) -> int:
        return x

    @step
    def b(x: int) -> int:
        return x

    wf = Workflow.sequence(double)
    wf.add(a)
    wf.add(b)
    wf.link("a.result", "b.x")
    wf.link("b.result", "a.x", max_iterations=3)
    found = messages(wf)
    assert "steps.a: step 'a' is unreachable: no link leads to it from the workflow inputs or a source step" in found
    assert any(m.startswith("steps.b: step 'b' is unreachable") for m in found)


def test_manual_and_source_steps_are_roots():
    @step(trigger=Manual())
    def on_demand(n: int) -> int:
        return n

    @step
    def source() -> int:
        return 1

    wf = Workflow("w", outputs={"a": int, "b": int}, steps=[on_demand, source])
    wf.link("source.result", "on_demand.n")
    wf.link("on_demand.result", "outputs.a")
    wf.link("source.result", "outputs.b")
    assert wf.problems() == []


def test_cycle_without_an_iteration_bound_is_an_error():
    @step
    def ping(n: int) -> int:
        return n + 1

    @step
    def pong(n: int) -> int:
        return n

    wf = Workflow("w", inputs={"n": int}, outputs={"n": int}, steps=[ping, pong])
    wf.link("inputs.n", "ping.n")
    wf.link("ping.result", "pong.n")
    wf.link("pong.result", "ping.n")
    wf.link("pong.result", "outputs.n")
    [problem] = wf.problems()
    assert problem.where == "links"
    assert problem.message == (
        "cycle without an iteration bound: ping -> pong -> ping (set max_iterations on one of its links)"
    )

    bounded = Workflow("w", inputs={"n": int}, outputs={"n": int}, steps=[ping, pong])
    bounded.link("inputs.n", "ping.n")
    bounded.link("ping.result", "pong.n")
    bounded.link("pong.result", "ping.n", max_iterations=5)
    bounded.link("pong.result", "outputs.n")
    assert bounded.problems() == []


def test_self_loop_without_a_bound_is_an_error():
    wf = Workflow("w", inputs={"n": int}, outputs={"n": int}, steps=[double])
    wf.link("inputs.n", "double.n")
    wf.link("double.result", "double.n")
    wf.link("double.result", "outputs.n")
    assert messages(wf) == [
        "links: step 'double' is linked to itself; to use one step several times, add each use under its own "
        "name (step.renamed('double_2') or workflow.add(step, name='double_2')); for a loop on purpose, set "
        "max_iterations on the link"
    ]


async def test_validate_and_run_raise_one_error_listing_every_problem():
    wf = Workflow("broken", inputs={"text": str}, outputs={"n": int}, steps=[shout, double])
    wf.link("inputs.text", "shout.text")
    wf.link("shout.result", "double.n")
    wf.link("double.result", "outputs.nope")
    with pytest.raises(WorkflowValidationError) as info:
        wf.validate()
    error = info.value
    assert error.subject == "workflow 'broken'"
    assert len(error.problems) == 3
    assert all(isinstance(p, Problem) for p in error.problems)
    text = str(error)
    assert text.startswith("workflow 'broken' is not a valid workflow (3 problems):")
    assert "shout.result gives str but double.n expects int" in text
    assert "workflow output 'nope' does not exist" in text
    assert "workflow output 'n' is not produced by any link" in text

    with pytest.raises(WorkflowValidationError):
        await wf.run(text="x")


async def test_nested_workflow_is_validated_with_its_parent():
    inner = Workflow("inner", inputs={"n": int}, outputs={"n": int}, steps=[double])
    inner.link("inputs.n", "double.n")  # inner never produces its output
    outer = Workflow.sequence(inner, name="outer")
    with pytest.raises(WorkflowValidationError, match=r"(?s)workflow 'inner'.*'n' is not produced"):
        await outer.run(n=1)


def test_problem_text_includes_file_and_line_when_known():
    assert str(Problem("steps.a", "bad", file="flow.yaml", line=3)) == "flow.yaml:3: steps.a: bad"
    assert str(Problem("steps.a", "bad", line=3)) == "line 3: steps.a: bad"
    assert str(Problem("", "bad")) == "bad"


# -- graph walks need no recursion ----------------------------------------------------------------
class _Increment(Step):
    inputs = {"x": int}
    outputs = {"x": int}

    async def process(self, inputs: dict) -> dict:
        return {"x": inputs["x"] + 1}


def _chain(n: int) -> Workflow:
    steps = [_Increment(name=f"s{i}") for i in range(n)]
    links = [Link("inputs.x", "s0.x"), *(Link(f"s{i - 1}.x", f"s{i}.x") for i in range(1, n))]
    links.append(Link(f"s{n - 1}.x", "outputs.x"))
    return Workflow("chain", inputs={"x": int}, outputs={"x": int}, steps=steps, links=links)


def test_a_chain_of_100000_steps_validates_and_compiles():
    # The collector's passes over a million young objects would triple the time; this test is
    # about recursion, so it runs without them.
    gc.disable()
    try:
        wf = _chain(100_000)
        assert wf.problems() == []
        plan = wf.plan()
    finally:
        gc.enable()
    assert len(plan.steps) == 100_000
    assert [r.target for r in plan.steps[99_998].routes["x"]] == [99_999]


def test_a_long_unbounded_cycle_is_found_without_recursion():
    wf = _chain(5_000)
    wf.link("s4999.x", "s0.x")
    [problem] = [p for p in wf.problems() if "cycle" in p.message]
    assert problem.message.startswith("cycle without an iteration bound: s0 -> s1 -> s2")
    assert "s4999 -> s0 (set max_iterations" in problem.message


def test_walk_reaches_every_step_of_deeply_nested_workflows_in_order():
    inner: Workflow = _chain(2)
    for depth in range(3_000):
        inner = Workflow(f"level{depth}", inputs={"x": int}, outputs={"x": int}, steps=[inner])
    found = inner.walk()
    assert len(found) == 3_000 + 1 + 2
    assert [s.name for s in found[-3:]] == ["chain", "s0", "s1"]


def test_unknown_names_in_messages_are_listed_briefly():
    wf = _chain(1_000)
    wf.link("ghost.x", "outputs.x")
    [problem] = [p for p in wf.problems() if "ghost" in p.message]
    assert problem.message.endswith("(steps: s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 and 990 more)")
