"""`kind: map` and `fan_in:` links in YAML build the same objects as Python."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import nanobrain as nb
from nanobrain.config import load_workflow

H = "tests.config.engine_helpers"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wf.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(nb.ConfigError) as caught:
        load_workflow(path)
    return [str(p) for p in caught.value.problems]


async def test_a_map_step_in_yaml_fans_out_and_sums(tmp_path: Path):
    path = write(
        tmp_path,
        f"""
        name: squares
        inputs: {{xs: "list[int]"}}
        outputs: {{total: int}}
        steps:
          each:
            kind: map
            max_concurrency: 4
            step: {{function: "{H}:square"}}
          sum: {{function: "{H}:total"}}
        links:
          - {{from: inputs.xs, to: each.x}}
          - {{from: each.result, to: sum.result}}
          - {{from: sum.result, to: outputs.total}}
        """,
    )
    wf = load_workflow(path)
    each = wf.steps["each"]
    assert isinstance(each, nb.Map) and each.max_concurrency == 4 and each.over == "x"
    assert await wf.run(xs=list(range(100))) == {"total": sum(i * i for i in range(100))}


async def test_a_yaml_map_can_collect_errors(tmp_path: Path):
    path = write(
        tmp_path,
        f"""
        name: inverses
        inputs: {{xs: "list[int]"}}
        outputs: {{result: null, errors: null}}
        steps:
          inv:
            kind: map
            over: x
            on_error: collect
            step: {{function: "{H}:inverse"}}
        links:
          - {{from: inputs.xs, to: inv.x}}
          - {{from: inv.result, to: outputs.result}}
          - {{from: inv.errors, to: outputs.errors}}
        """,
    )
    out = await load_workflow(path).run(xs=[1, 0, 4])
    assert out["result"] == [1.0, None, 0.25]
    [error] = out["errors"]
    assert error.index == 1 and isinstance(error.error, ZeroDivisionError)


def test_a_map_naming_a_missing_input_is_a_config_problem(tmp_path: Path):
    path = write(
        tmp_path,
        f"""
        name: bad
        inputs: {{xs: "list[int]"}}
        steps:
          each:
            kind: map
            over: y
            step: {{function: "{H}:square"}}
        links:
          - {{from: inputs.xs, to: each.x}}
        """,
    )
    [problem] = problems_of(path)
    assert "steps.each.over" in problem
    assert "has no input 'y' (inputs: x)" in problem


async def test_collecting_links_in_yaml(tmp_path: Path):
    path = write(
        tmp_path,
        f"""
        name: join
        inputs: {{x: int}}
        outputs: {{total: int, keys: null}}
        steps:
          a: {{function: "{H}:plus_one"}}
          b: {{function: "{H}:double"}}
          sum: {{function: "{H}:add_up"}}
          names: {{function: "{H}:keys"}}
        links:
          - {{from: inputs.x, to: a.x}}
          - {{from: inputs.x, to: b.x}}
          - {{from: a.result, to: sum.values, fan_in: collect}}
          - {{from: b.result, to: sum.values, fan_in: collect}}
          - {{from: a.result, to: names.values, fan_in: collect_dict}}
          - {{from: b.result, to: names.values, fan_in: collect_dict}}
          - {{from: sum.result, to: outputs.total}}
          - {{from: names.result, to: outputs.keys}}
        """,
    )
    assert await load_workflow(path).run(x=5) == {"total": 16, "keys": ["a", "b"]}


def test_an_ambiguous_join_in_yaml_is_reported_with_file_and_hint(tmp_path: Path):
    path = write(
        tmp_path,
        f"""
        name: join
        inputs: {{x: int}}
        outputs: {{total: int}}
        steps:
          a: {{function: "{H}:plus_one"}}
          b: {{function: "{H}:plus_one"}}
          sum: {{function: "{H}:plus_one"}}
        links:
          - {{from: inputs.x, to: a.x}}
          - {{from: inputs.x, to: b.x}}
          - {{from: a.result, to: sum.x}}
          - {{from: b.result, to: sum.x}}
          - {{from: sum.result, to: outputs.total}}
        """,
    )
    [problem] = problems_of(path)
    assert str(path) in problem
    assert "2 links feed 'sum.x' (a.result, b.result)" in problem and "fan_in='collect'" in problem


def test_an_unknown_fan_in_is_a_schema_problem(tmp_path: Path):
    path = write(
        tmp_path,
        f"""
        name: join
        inputs: {{x: int}}
        steps:
          a: {{function: "{H}:plus_one"}}
        links:
          - {{from: inputs.x, to: a.x, fan_in: zip}}
        """,
    )
    [problem] = problems_of(path)
    assert "links[0].fan_in" in problem
