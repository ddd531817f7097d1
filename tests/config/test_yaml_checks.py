"""Checks of the YAML text itself: duplicate keys, encodings, nested workflow files that cannot be read."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import nanobrain as nb
from nanobrain.config import load_workflow
from nanobrain.config.yaml_source import parse

H = "tests.config.helpers_for_config"


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(nb.ConfigError) as caught:
        load_workflow(path)
    return [str(problem) for problem in caught.value.problems]


def test_duplicate_keys_are_reported_with_the_other_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        name: dup
        inputs: {{text: str}}
        outputs: {{result: str}}
        steps:
          twice: {{function: "{H}:upper"}}
          twice: {{function: "{H}:exclaim", timeout: -1}}
          other: {{function: "{H}:no_such_function"}}
        links:
          - {{from: inputs.text, to: twice.text}}
          - {{from: twice.result, to: outputs.result}}
          - {{from: inputs.text, to: other.text}}
        """,
    )
    problems = problems_of(path)
    assert f"{path}:6: steps.twice: duplicate key (first defined on line 5)" in problems
    assert any(p.startswith(f"{path}:6: steps.twice.timeout:") for p in problems), problems  # the last one wins
    assert any(p.startswith(f"{path}:7: steps.other.function:") for p in problems), problems
    assert len(problems) == 3, problems


def test_a_duplicate_that_is_otherwise_valid_is_still_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        name: dup
        name: again
        inputs: {{text: str, text: str}}
        outputs: {{result: str}}
        steps:
          upper:
            function: "{H}:upper"
            function: "{H}:exclaim"
        links:
          - {{from: inputs.text, to: upper.text, from: inputs.text}}
          - {{from: upper.result, to: outputs.result}}
        """,
    )
    assert problems_of(path) == [
        f"{path}:2: name: duplicate key (first defined on line 1)",
        f"{path}:3: inputs.text: duplicate key (first defined on line 3)",
        f"{path}:8: steps.upper.function: duplicate key (first defined on line 7)",
        f"{path}:10: links[0].from: duplicate key (first defined on line 10)",
    ]


def test_merge_keys_and_equal_values_under_different_keys_are_not_duplicates() -> None:
    source = parse("base: &b {x: 1}\nfirst: {<<: *b, y: 2}\nsecond: {<<: *b, x: 3}\n'1': a\n1: b\n")
    assert source.problems == []
    assert source.data["second"] == {"x": 3}


def test_duplicate_keys_in_a_nested_workflow_file_name_that_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        f"""
        name: inner
        inputs: {{text: str}}
        outputs: {{result: str}}
        steps:
          upper: {{function: "{H}:upper"}}
        links:
          - {{from: inputs.text, to: upper.text}}
          - {{from: upper.result, to: outputs.result}}
        outputs: {{result: str}}
        """,
        name="inner.yaml",
    )
    outer = write(
        tmp_path,
        """
        name: outer
        inputs: {text: str}
        outputs: {result: str}
        steps:
          sub: {kind: workflow, file: inner.yaml}
        links:
          - {from: inputs.text, to: sub.text}
          - {from: sub.result, to: outputs.result}
        """,
        name="outer.yaml",
    )
    assert problems_of(outer) == [f"{tmp_path / 'inner.yaml'}:9: outputs: duplicate key (first defined on line 3)"]


NESTED_MISSING = """
name: c1
inputs: {text: str}
outputs: {result: str}
steps:
  sub:
    kind: workflow
    file: missing.yaml
links:
  - {from: inputs.text, to: sub.text}
  - {from: sub.result, to: outputs.result}
"""


def test_a_missing_nested_workflow_file_is_reported_where_it_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, NESTED_MISSING, name="c1.yaml")
    expected = f"{path}:7: steps.sub.file: cannot read nested workflow 'missing.yaml': file not found"
    assert problems_of(path) == [expected]


def test_a_nested_workflow_file_that_is_not_utf8_is_reported_where_it_is_named(tmp_path: Path) -> None:
    (tmp_path / "missing.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    path = write(tmp_path, NESTED_MISSING, name="c1.yaml")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:7: steps.sub.file: cannot read nested workflow 'missing.yaml': not UTF-8 text")
    assert "0xe9 on line 1" in problem


def test_a_workflow_file_that_is_not_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: shout\ndescription: d\xe9j\xe0 vu\n".encode("latin-1"))
    with pytest.raises(nb.ConfigError) as caught:
        load_workflow(path)
    [problem] = caught.value.problems
    assert (problem.file, problem.line) == (str(path), 2)
    assert problem.message.startswith("not UTF-8 text: byte 0xe9 on line 2")
    assert caught.value.subject == str(path)
