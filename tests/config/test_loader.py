"""The YAML loader builds the same objects as Python, and reports every problem with file, line and path."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import nanobrain as nb
from nanobrain.config import load_workflow, workflow_from_dict
from nanobrain.config.schema import json_schema

H = "tests.config.helpers_for_config"


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[nb.Problem]:
    with pytest.raises(nb.ConfigError) as caught:
        load_workflow(path)
    return caught.value.problems


SHOUT = f"""
name: shout
inputs: {{text: str}}
outputs: {{result: str}}
steps:
  upper: {{function: "{H}:upper"}}
  exclaim: {{function: "{H}:exclaim"}}
links:
  - {{from: inputs.text, to: upper.text}}
  - {{from: upper.result, to: exclaim.text}}
  - {{from: exclaim.result, to: outputs.result}}
"""


async def test_yaml_and_python_build_the_same_workflow(tmp_path: Path) -> None:
    from tests.config import helpers_for_config as h

    loaded = load_workflow(write(tmp_path, SHOUT))
    built = nb.Workflow("shout", inputs={"text": str}, outputs={"result": str})
    built.chain(nb.FunctionStep(h.upper), nb.FunctionStep(h.exclaim))
    built.link("inputs.text", "upper.text")
    built.link("exclaim.result", "outputs.result")
    assert await loaded.run(text="hi") == await built.run(text="hi") == {"result": "HI!"}
    assert [type(s) for s in loaded.steps.values()] == [nb.FunctionStep, nb.FunctionStep]
    assert loaded.inputs["text"].type is str


async def test_step_options_triggers_retry_executors_and_class_steps(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        name: options
        inputs:
          text: str
          times: {{type: int, default: 3}}
        outputs: {{result: str, size: int}}
        executors:
          pool: {{kind: thread, max_workers: 2}}
        steps:
          upper:
            function: "{H}:upper"
            timeout: 5
            retry: {{attempts: 2, initial: 0, retry_on: [ValueError]}}
            executor: pool
            trigger: on_update
          size:
            function: "{H}:length"
            executor: pool
            trigger: {{kind: condition, predicate: "{H}:always"}}
          repeat:
            kind: class
            class: "{H}:Repeat"
            options: {{times: 2}}
        links:
          - {{from: inputs.text, to: upper.text}}
          - {{from: upper.result, to: repeat.text}}
          - {{from: upper.result, to: size.text}}
          - {{from: repeat.result, to: outputs.result}}
          - {{from: size.result, to: outputs.size}}
        """,
    )
    workflow = load_workflow(path)
    upper, size = workflow.steps["upper"], workflow.steps["size"]
    assert upper.timeout == 5 and upper.retry is not None and upper.retry.retry_on == (ValueError,)
    assert isinstance(upper.executor, nb.ThreadExecutor) and upper.executor is size.executor
    assert isinstance(upper.trigger, nb.OnUpdate) and isinstance(size.trigger, nb.Condition)
    assert workflow.inputs["times"].default == 3
    async with workflow:
        assert await workflow.run(text="ab") == {"result": "ABAB", "size": 2}


async def test_nested_workflow_from_file_and_inline(tmp_path: Path) -> None:
    write(tmp_path, SHOUT, "inner.yaml")
    path = write(
        tmp_path,
        f"""
        name: outer
        inputs: {{text: str}}
        outputs: {{a: str, b: str}}
        steps:
          from_file: {{kind: workflow, file: inner.yaml}}
          inline:
            kind: workflow
            workflow:
              name: inline
              inputs: {{text: str}}
              outputs: {{result: str}}
              steps:
                upper: {{function: "{H}:upper"}}
              links:
                - {{from: inputs.text, to: upper.text}}
                - {{from: upper.result, to: outputs.result}}
        links:
          - {{from: inputs.text, to: from_file.text}}
          - {{from: inputs.text, to: inline.text}}
          - {{from: from_file.result, to: outputs.a}}
          - {{from: inline.result, to: outputs.b}}
        """,
    )
    workflow = load_workflow(path)
    assert isinstance(workflow.steps["from_file"], nb.Workflow)
    assert await workflow.run(text="x") == {"a": "X!", "b": "X"}


def test_environment_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NB_TEST_NAME", "from-env")
    monkeypatch.delenv("NB_TEST_UNSET", raising=False)
    text = SHOUT.replace("name: shout", "name: ${NB_TEST_NAME}\ndescription: ${NB_TEST_UNSET:-fallback}")
    workflow = load_workflow(write(tmp_path, text))
    assert workflow.name == "from-env"
    assert workflow.description == "fallback"

    missing = problems_of(write(tmp_path, SHOUT.replace("name: shout", "name: ${NB_TEST_UNSET}"), "bad.yaml"))
    assert len(missing) == 1
    assert missing[0].where == "name" and missing[0].line == 1
    assert "NB_TEST_UNSET is not set" in missing[0].message


def test_schema_errors_name_file_line_and_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        name: broken
        inputs: {{text: str}}
        steps:
          upper:
            function: "{H}:upper"
            timeout: -1
            colour: red
          other:
            kind: function
        links: []
        """,
    )
    problems = problems_of(path)
    by_where = {p.where: p for p in problems}
    assert by_where["steps.upper.timeout"].line == 6
    assert "greater than 0" in by_where["steps.upper.timeout"].message
    assert by_where["steps.upper.colour"].line == 7
    assert "unknown field" in by_where["steps.upper.colour"].message
    assert by_where["steps.other.function"].message == "required field is missing"
    assert all(p.file == str(path) for p in problems)
    assert f"{path}:6: steps.upper.timeout" in str(nb.ConfigError(problems))


def test_bad_references_and_types_are_reported_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        name: refs
        inputs: {{text: strng}}
        outputs: {{result: str}}
        steps:
          a: {{function: "no_such_module_xyz:fn"}}
          b: {{function: "{H}:missing_attr"}}
          c: {{function: "{H}:not_callable"}}
          d: {{kind: agentt}}
        links:
          - {{from: inputs.text, to: a.text, transform: "nocolon"}}
        """,
    )
    problems = problems_of(path)
    text = "\n".join(str(p) for p in problems)
    assert "inputs.text: unknown type 'strng'" in text
    assert "steps.a.function: cannot import module 'no_such_module_xyz'" in text
    assert "has no attribute 'missing_attr'" in text
    assert "steps.c.function: 'tests.config.helpers_for_config:not_callable' is not callable" in text
    assert "steps.d.kind: unknown step kind 'agentt'" in text
    assert "links[0].transform" in text
    # The graph is still checked around the broken pieces: nothing feeds the output.
    assert "outputs.result: workflow output 'result' is not produced by any link" in text
    assert len(problems) == 7


@pytest.mark.parametrize(
    ("links", "steps", "expected", "line"),
    [
        (  # unconnected required input
            "[{from: inputs.text, to: upper.text}, {from: upper.result, to: outputs.result}]",
            f'upper: {{function: "{H}:upper"}}\n  exclaim: {{function: "{H}:exclaim"}}',
            "required input 'text' of step 'exclaim' is not connected",
            None,
        ),
        (  # type mismatch across a link
            "[{from: inputs.text, to: size.text}, {from: size.result, to: up.text},"
            " {from: up.result, to: outputs.result}]",
            f'size: {{function: "{H}:length"}}\n  up: {{function: "{H}:upper"}}',
            "type mismatch: size.result gives int but up.text expects str",
            None,
        ),
        (  # unknown unit
            "[{from: inputs.text, to: upper.txt}, {from: upper.result, to: outputs.result}]",
            f'upper: {{function: "{H}:upper"}}',
            "step 'upper' input 'txt' does not exist",
            None,
        ),
        (  # unknown step
            "[{from: inputs.text, to: uper.text}, {from: upper.result, to: outputs.result}]",
            f'upper: {{function: "{H}:upper"}}',
            "unknown step 'uper'",
            None,
        ),
        (  # unbounded cycle
            "[{from: inputs.text, to: a.text}, {from: a.result, to: b.text}, {from: b.result, to: a.text},"
            " {from: b.result, to: outputs.result}]",
            f'a: {{function: "{H}:upper", trigger: on_update}}\n  b: {{function: "{H}:upper"}}',
            "cycle without an iteration bound: a -> b -> a",
            None,
        ),
    ],
    ids=["unconnected", "type-mismatch", "unknown-unit", "unknown-step", "unbounded-cycle"],
)
def test_graph_problems_carry_the_config_line(
    tmp_path: Path, links: str, steps: str, expected: str, line: None
) -> None:
    path = write(
        tmp_path,
        f"name: g\ninputs: {{text: str}}\noutputs: {{result: str}}\nsteps:\n  {steps}\nlinks: {links}\n",
    )
    problems = problems_of(path)
    matching = [p for p in problems if expected in p.message]
    assert matching, [str(p) for p in problems]
    assert matching[0].line is not None and matching[0].file == str(path)


def test_graph_is_checked_around_broken_steps_without_follow_on_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        name: g
        inputs: {{text: str}}
        outputs: {{result: str}}
        steps:
          upper: {{function: "{H}:upper", colour: red}}
          good: {{function: "{H}:upper"}}
        links:
          - {{from: inputs.text, to: upper.text}}
          - {{from: inputs.text, to: good.text}}
          - {{from: upper.result, to: outputs.result}}
          - {{from: good.reslt, to: outputs.result}}
        """,
    )
    problems = [(p.where, p.line) for p in problems_of(path)]
    assert problems == [("steps.upper.colour", 5), ("links[3]", 11)]


def test_one_bad_top_level_field_does_not_hide_step_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        name: g
        steps:
          upper: {{function: "{H}:upper", timeout: 0}}
        links:
          - {{from: inputs.text, to: upper.text, max_iteration: 3}}
        """,
    )
    assert sorted(p.where for p in problems_of(path)) == ["links[0].max_iteration", "steps.upper.timeout"]


def test_every_problem_of_one_step_is_reported(tmp_path: Path) -> None:
    # A bad timeout used to stop the step's check there, hiding its bad function reference and executor.
    path = write(
        tmp_path,
        """
        name: g
        steps:
          upper: {function: "no_such_module_xyz:upper", timeout: -1, executor: gpu, concurrency: zero}
        """,
    )
    problems = {p.where: p.message for p in problems_of(path)}
    assert sorted(problems) == [
        "steps.upper.concurrency",
        "steps.upper.executor",
        "steps.upper.function",
        "steps.upper.timeout",
    ], problems
    assert "greater than 0" in problems["steps.upper.timeout"]
    assert "cannot import module 'no_such_module_xyz'" in problems["steps.upper.function"]
    assert "unknown executor 'gpu'" in problems["steps.upper.executor"]


def test_a_step_missing_a_required_field_is_reported_once(tmp_path: Path) -> None:
    path = write(tmp_path, "name: g\nsteps:\n  upper: {timeout: -1}\n")
    assert sorted(p.where for p in problems_of(path)) == ["steps.upper.function", "steps.upper.timeout"]


def test_unreachable_step_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        name: g
        inputs: {{text: str}}
        outputs: {{result: str}}
        steps:
          upper: {{function: "{H}:upper"}}
          a: {{function: "{H}:upper"}}
          b: {{function: "{H}:upper"}}
        links:
          - {{from: inputs.text, to: upper.text}}
          - {{from: upper.result, to: outputs.result}}
          - {{from: a.result, to: b.text, max_iterations: 3}}
          - {{from: b.result, to: a.text}}
        """,
    )
    messages = [p.message for p in problems_of(path)]
    assert "step 'a' is unreachable: no link leads to it from the workflow inputs or a source step" in messages
    assert "step 'b' is unreachable: no link leads to it from the workflow inputs or a source step" in messages


def test_yaml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "name: x\nsteps: [\n  - a: b\n  c: d\n"))
    assert "YAML syntax error" in problems[0].message and problems[0].line is not None
    missing = problems_of(tmp_path / "nope.yaml")
    assert missing[0].message == "file not found"


def test_nested_file_that_includes_itself(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: selfish\ninputs: {x: str}\nsteps:\n  me: {kind: workflow, file: wf.yaml}\n"
        "links: [{from: inputs.x, to: me.x}]\n",
    )
    messages = [p.message for p in problems_of(path)]
    assert any("includes itself" in m for m in messages)


def test_workflow_from_dict() -> None:
    workflow = workflow_from_dict(
        {
            "name": "d",
            "inputs": {"value": "int"},
            "outputs": {"value": "int"},
            "steps": {"double": {"function": f"{H}:double"}},
            "links": [{"from": "inputs.value", "to": "double.value"}, {"from": "double.result", "to": "outputs.value"}],
        }
    )
    assert workflow.steps["double"].inputs["value"].type is int


def test_json_schema_lists_every_step_kind() -> None:
    schema = json_schema()
    json.dumps(schema)  # serializable
    variants = schema["properties"]["steps"]["additionalProperties"]["anyOf"]
    names = {v["$ref"].rsplit("/", 1)[1] for v in variants}
    assert {"FunctionStepConfig", "ClassStepConfig", "WorkflowStepConfig"} <= names
    assert "function" in schema["$defs"]["FunctionStepConfig"]["required"]
    assert "links" in schema["properties"]


def test_an_unset_variable_does_not_hide_other_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NB_TEST_UNSET_MODEL", raising=False)
    path = write(
        tmp_path,
        f"""
        name: w
        inputs: {{text: str}}
        outputs: {{result: str}}
        steps:
          upper: {{function: "${{NB_TEST_UNSET_MODEL}}"}}
          other: {{function: "{H}:upper", timeout: -1}}
        links:
          - {{from: inputs.text, to: upper.text}}
          - {{from: inputs.text, to: other.text}}
          - {{from: upper.result, to: outputs.result}}
        """,
    )
    problems = {p.where: p.message for p in problems_of(path)}
    assert "NB_TEST_UNSET_MODEL is not set" in problems["steps.upper.function"]
    assert "greater than 0" in problems["steps.other.timeout"]
    assert len(problems) == 2  # nothing that the empty reference alone causes


def test_kinds_are_imported_only_when_a_document_uses_them() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from nanobrain.config import load_workflow\n"
        "load_workflow('examples/pipeline.yaml')\n"
        "assert 'nanobrain.infrastructure.parallel' not in sys.modules\n"
        "assert 'nanobrain.agents.config' not in sys.modules\n"
        "load_workflow('examples/assistant.yaml')\n"
        "assert 'nanobrain.agents.config' in sys.modules\n"
        "from nanobrain.config.schema import json_schema\n"
        "assert 'ParallelStepConfig' in json_schema()['$defs']\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
