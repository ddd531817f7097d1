"""`nanobrain validate` checks without running the workflow's code unless asked, says that a workflow
file is code, and keeps its output short; `--input-json @file` reads only regular files."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from nanobrain.interfaces.cli import UsageProblem, app, parse_inputs


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def project(tmp_path: Path) -> tuple[Path, Path]:
    """A workflow whose module leaves a marker when its code runs."""
    marker = tmp_path / "module-code-ran"
    (tmp_path / "nb_validate_steps.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n\n"
        "def upper(text: str) -> str:\n    return text.upper()\n"
    )
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        textwrap.dedent(
            """
            name: marked
            inputs: {text: str}
            outputs: {result: str}
            steps:
              upper: {function: "nb_validate_steps:upper"}
            links:
              - {from: inputs.text, to: upper.text}
              - {from: upper.result, to: outputs.result}
            """
        )
    )
    return wf, marker


def test_validate_runs_no_user_code_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setattr(sys, "path", list(sys.path))
    wf, marker = project(tmp_path)
    result = invoke("validate", wf)
    assert result.exit_code == 0, result.output
    assert "OK" in result.stdout and "not imported" in result.stdout
    assert not marker.exists()
    result = invoke("validate", wf, "--import")
    assert result.exit_code == 0, result.output
    assert marker.exists()
    sys.modules.pop("nb_validate_steps", None)


def test_validate_help_says_a_workflow_file_is_code() -> None:
    text = " ".join(invoke("validate", "--help").stdout.split())
    assert "--import" in text
    assert "A workflow file is code" in text
    assert "located without importing" in text
    assert "A workflow file is code" in " ".join(invoke("--help").stdout.split())


def test_validate_lists_the_first_problems_and_counts_the_rest(tmp_path: Path) -> None:
    wf = tmp_path / "many.yaml"
    steps = "".join(f"  s{i}: {{function: 'nb_nowhere_{i}:f'}}\n" for i in range(300))
    wf.write_text(f"name: many\nsteps:\n{steps}")
    result = invoke("validate", wf)
    assert result.exit_code == 1
    problem_lines = [line for line in result.stderr.splitlines() if line.startswith("  ")]
    assert len(problem_lines) == 51, result.stderr
    assert problem_lines[-1] == "  ... and 250 more problems"
    assert "300 problems" in result.stderr


def test_validate_reports_every_problem_of_one_step(tmp_path: Path) -> None:
    wf = tmp_path / "two.yaml"
    wf.write_text('name: two\nsteps:\n  s: {function: "nb_nowhere_at_all:f", timeout: soon}\n')
    result = invoke("validate", wf)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "steps.s.timeout: Input should be a valid number" in result.stderr, result.stderr
    assert "steps.s.function: cannot find module 'nb_nowhere_at_all'" in result.stderr, result.stderr
    assert "2 problems" in result.stderr


def test_validate_refuses_special_files_quickly(tmp_path: Path) -> None:
    started = time.monotonic()
    result = invoke("validate", "/dev/zero")
    assert result.exit_code == 1
    assert "a device, not a regular file" in result.stderr
    assert "Traceback" not in result.output
    assert time.monotonic() - started < 5


def test_input_json_reads_only_regular_files(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(UsageProblem, match="a device, not a regular file"):
        parse_inputs([], "@/dev/zero")
    with pytest.raises(UsageProblem, match="a directory"):
        parse_inputs([], f"@{tmp_path}")
    os.mkfifo(tmp_path / "pipe")  # opening it to read would wait for a writer forever
    with pytest.raises(UsageProblem, match="named pipe"):
        parse_inputs([], f"@{tmp_path / 'pipe'}")
    assert time.monotonic() - started < 5
    data = tmp_path / "inputs.json"
    data.write_text('{"text": "hi"}')
    assert parse_inputs([], f"@{data}") == {"text": "hi"}
    data.write_bytes(b'{"text": "\xff"}')
    with pytest.raises(UsageProblem, match="not UTF-8"):
        parse_inputs([], f"@{data}")
