"""The `nanobrain` command: run, validate, graph, schema; errors without tracebacks; Ctrl-C; live progress."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from nanobrain.interfaces.cli import app, parse_inputs

HELPERS = "nb_cli_helpers"

Write = Callable[..., Path]

HELPERS_SOURCE = """
import asyncio

from nanobrain import current_context


def upper(text: str) -> str:
    return text.upper()


def exclaim(text: str) -> str:
    return text + "!"


def add(a: int, b: int) -> int:
    return a + b


def explode(text: str) -> str:
    raise ValueError("the input was cursed")


def speak(text: str) -> str:
    context = current_context()
    for word in text.split():
        context.token(word + " ")
    return text


async def slow(text: str) -> str:
    await asyncio.sleep(float(text))
    return text
"""


def shout_yaml(name: str = "shout") -> str:
    return f"""
    name: {name}
    inputs: {{text: str}}
    outputs: {{result: str}}
    steps:
      upper: {{function: "{HELPERS}:upper"}}
      exclaim: {{function: "{HELPERS}:exclaim"}}
    links:
      - {{from: inputs.text, to: upper.text}}
      - {{from: upper.result, to: exclaim.text}}
      - {{from: exclaim.result, to: outputs.result}}
    """


ADD = f"""
name: adder
inputs: {{a: int, b: int}}
outputs: {{total: int}}
steps:
  add: {{function: "{HELPERS}:add"}}
links:
  - {{from: inputs.a, to: add.a}}
  - {{from: inputs.b, to: add.b}}
  - {{from: add.result, to: outputs.total}}
"""

FAILING = f"""
name: failing
inputs: {{text: str}}
outputs: {{result: str}}
steps:
  upper: {{function: "{HELPERS}:upper"}}
  explode: {{function: "{HELPERS}:explode"}}
links:
  - {{from: inputs.text, to: upper.text}}
  - {{from: upper.result, to: explode.text}}
  - {{from: explode.result, to: outputs.result}}
"""

NESTED_FAILING = f"""
name: outer
inputs: {{text: str}}
outputs: {{result: str}}
steps:
  inner:
    kind: workflow
    workflow:
      name: inner
      inputs: {{text: str}}
      outputs: {{result: str}}
      steps:
        explode: {{function: "{HELPERS}:explode"}}
      links:
        - {{from: inputs.text, to: explode.text}}
        - {{from: explode.result, to: outputs.result}}
links:
  - {{from: inputs.text, to: inner.text}}
  - {{from: inner.result, to: outputs.result}}
"""

SPEAK = f"""
name: speaker
inputs: {{text: str}}
outputs: {{said: str}}
steps:
  speak: {{function: "{HELPERS}:speak"}}
links:
  - {{from: inputs.text, to: speak.text}}
  - {{from: speak.result, to: outputs.said}}
"""

SLOW = f"""
name: slowpoke
inputs: {{seconds: str}}
outputs: {{result: str}}
steps:
  wait: {{function: "{HELPERS}:slow"}}
  upper: {{function: "{HELPERS}:upper"}}
links:
  - {{from: inputs.seconds, to: wait.text}}
  - {{from: wait.result, to: upper.text}}
  - {{from: upper.result, to: outputs.result}}
"""

# Three problems in one file: an unknown function, a bad timeout, and a misspelt field.
BROKEN = f"""
name: broken
inputs: {{text: str}}
outputs: {{result: str}}
steps:
  upper: {{function: "{HELPERS}:no_such_function"}}
  exclaim: {{function: "{HELPERS}:exclaim", timeout: -1}}
  again: {{function: "{HELPERS}:exclaim", tiemout: 3}}
links:
  - {{from: inputs.text, to: upper.text}}
  - {{from: upper.result, to: exclaim.text}}
  - {{from: exclaim.result, to: again.text}}
  - {{from: again.result, to: outputs.result}}
"""

# A graph problem (found by the engine once the document itself is fine): a link from a missing step.
UNKNOWN_STEP = f"""
name: ghostly
inputs: {{text: str}}
outputs: {{result: str}}
steps:
  upper: {{function: "{HELPERS}:upper"}}
links:
  - {{from: inputs.text, to: upper.text}}
  - {{from: ghost.result, to: outputs.result}}
"""


@pytest.fixture(scope="module")
def helpers_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("cli_helpers")
    (directory / f"{HELPERS}.py").write_text(HELPERS_SOURCE, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(directory))
        yield directory
    sys.modules.pop(HELPERS, None)


@pytest.fixture
def write(tmp_path: Path, helpers_dir: Path) -> Write:
    def write(text: str, name: str = "workflow.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def invoke(cli: CliRunner, *args: str | Path) -> Result:
    return cli.invoke(app, [str(a) for a in args])


# -- run ---------------------------------------------------------------------------------------
def test_run_prints_outputs(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(shout_yaml()), "--input", "text=hello")
    assert result.exit_code == 0, result.output
    assert "result" in result.stdout
    assert "HELLO!" in result.stdout
    assert result.stderr == ""


def test_run_json_prints_only_the_outputs_object(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(shout_yaml()), "-i", "text=hello", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"result": "HELLO!"}


def test_typed_inputs_convert_the_text_of_input_pairs(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(ADD), "-i", "a=2", "-i", "b=40", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"total": 42}


def test_input_json_is_merged_over_input_pairs(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(ADD), "-i", "a=1", "-i", "b=1", "--input-json", '{"b": 10}', "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"total": 11}


def test_input_json_from_a_file(cli: CliRunner, write: Write, tmp_path: Path) -> None:
    (tmp_path / "inputs.json").write_text('{"a": 3, "b": 4}', encoding="utf-8")
    result = invoke(cli, "run", write(ADD), "--input-json", f"@{tmp_path / 'inputs.json'}", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"total": 7}


def test_stream_json_emits_every_event_in_order(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(shout_yaml()), "-i", "text=hi", "--stream", "--json")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [(e["type"], e.get("step") or e.get("name")) for e in events]
    assert kinds == [
        ("run_started", None),
        ("step_started", "upper"),
        ("step_finished", "upper"),
        ("step_started", "exclaim"),
        ("output_set", "result"),
        ("step_finished", "exclaim"),
        ("run_finished", None),
    ]
    assert events[-1]["outputs"] == {"result": "HI!"}
    assert events[0]["inputs"] == {"text": "hi"}


def test_stream_prints_readable_lines_then_the_outputs(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(shout_yaml()), "-i", "text=hi", "--stream")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    upper_started = next(i for i, line in enumerate(lines) if "→ upper" in line)
    upper_finished = next(i for i, line in enumerate(lines) if "✓ upper" in line)
    exclaim_finished = next(i for i, line in enumerate(lines) if "✓ exclaim" in line)
    assert upper_started < upper_finished < exclaim_finished
    assert any("finished" in line for line in lines[exclaim_finished:])
    assert lines[-1].startswith("result:") and "HI!" in lines[-1]


def test_stream_prints_tokens_inline(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(SPEAK), "-i", "text=one two three", "--stream")
    assert result.exit_code == 0, result.output
    assert "one two three \n" in result.stdout


def test_stream_json_reports_tokens_as_events(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(SPEAK), "-i", "text=one two", "--stream", "--json")
    assert result.exit_code == 0, result.output
    tokens = [e["text"] for e in map(json.loads, result.stdout.splitlines()) if e["type"] == "token"]
    assert tokens == ["one ", "two "]


def test_no_progress_display_when_stdout_is_not_a_terminal(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(SLOW), "-i", "seconds=0.5")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.strip() == "result: 0.5"


# -- errors --------------------------------------------------------------------------------------
def test_failing_step_exits_1_and_names_the_step_without_traceback(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(FAILING), "-i", "text=x")
    assert result.exit_code == 1
    assert "explode" in result.stderr
    assert "the input was cursed" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_debug_shows_the_traceback(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "--debug", "run", write(FAILING), "-i", "text=x")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "the input was cursed" in result.stderr


def test_failure_in_a_nested_workflow_names_the_step_path(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(NESTED_FAILING), "-i", "text=x")
    assert result.exit_code == 1
    assert "step 'inner/explode' failed: ValueError: the input was cursed" in result.stderr
    assert "Traceback" not in result.output


def test_stream_shows_the_failure_then_exits_1(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(FAILING), "-i", "text=x", "--stream", "--json")
    assert result.exit_code == 1
    kinds = [json.loads(line)["type"] for line in result.stdout.splitlines()]
    assert kinds[-2:] == ["step_failed", "run_failed"]
    assert "explode" in result.stderr


@pytest.mark.parametrize("pair", ["text", "=value", ""])
def test_bad_input_syntax_is_an_error(cli: CliRunner, write: Write, pair: str) -> None:
    result = invoke(cli, "run", write(shout_yaml()), "--input", pair)
    assert result.exit_code == 1
    assert "NAME=VALUE" in result.stderr
    assert "Traceback" not in result.output


def test_input_value_may_contain_equals_signs() -> None:
    assert parse_inputs(["query=a=b", "empty="], None) == {"query": "a=b", "empty": ""}


def test_bad_input_json_is_an_error(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(shout_yaml()), "--input-json", '{"text": ')
    assert result.exit_code == 1
    assert "--input-json is not valid JSON" in result.stderr
    result = invoke(cli, "run", write(shout_yaml()), "--input-json", '["text"]')
    assert result.exit_code == 1
    assert "JSON object" in result.stderr


def test_unknown_input_name_is_an_error(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(shout_yaml()), "-i", "text=a", "-i", "txet=b")
    assert result.exit_code == 1
    assert "'txet'" in result.stderr
    assert "text" in result.stderr  # the inputs it does have


def test_missing_input_is_an_error(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(shout_yaml()))
    assert result.exit_code == 1
    assert "needs input 'text'" in result.stderr


def test_input_of_the_wrong_type_is_an_error(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(ADD), "-i", "a=two", "-i", "b=1")
    assert result.exit_code == 1
    assert "inputs.a" in result.stderr
    assert "Traceback" not in result.output


def test_missing_file_is_an_error(cli: CliRunner, tmp_path: Path) -> None:
    for command in ("run", "validate", "graph"):
        result = invoke(cli, command, tmp_path / "nope.yaml")
        assert result.exit_code == 1, command
        assert "nope.yaml" in result.stderr
        assert "not found" in result.stderr
        assert "Traceback" not in result.output


def test_config_errors_stop_run_with_every_problem(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "run", write(BROKEN), "-i", "text=x")
    assert result.exit_code == 1
    assert "no_such_function" in result.stderr
    assert "Traceback" not in result.output


def test_usage_errors_exit_2(cli: CliRunner, write: Write) -> None:
    assert invoke(cli, "run").exit_code == 2
    assert invoke(cli, "run", write(shout_yaml()), "--no-such-option").exit_code == 2
    assert invoke(cli, "graph", write(shout_yaml()), "--format", "svg").exit_code == 2


# -- validate, graph, schema, version ---------------------------------------------------------------
def test_validate_ok(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "validate", write(shout_yaml()))
    assert result.exit_code == 0, result.output
    assert "OK" in result.stdout
    assert "'shout'" in result.stdout
    assert "2 steps" in result.stdout


def test_validate_lists_every_problem_with_file_and_line(cli: CliRunner, write: Write) -> None:
    path = write(BROKEN, name="broken.yaml")
    result = invoke(cli, "validate", path, "--import")  # a missing attribute is found by importing
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    problem_lines = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]
    assert len(problem_lines) == 3, result.stderr
    assert any(line.startswith(f"{path}:5: steps.upper.function:") for line in problem_lines), problem_lines
    assert any(line.startswith(f"{path}:6: steps.exclaim.timeout:") for line in problem_lines), problem_lines
    assert any(line.startswith(f"{path}:7: steps.again.tiemout:") for line in problem_lines), problem_lines
    assert "3 problems" in result.stderr


def test_validate_reports_graph_problems_with_their_line(cli: CliRunner, write: Write) -> None:
    path = write(UNKNOWN_STEP)
    result = invoke(cli, "validate", path)
    assert result.exit_code == 1
    assert f"{path}:8: links[1]: unknown step 'ghost'" in result.stderr
    assert "Traceback" not in result.output


def test_validate_reports_yaml_syntax_errors(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "validate", write("name: x\nsteps: [unclosed\n"))
    assert result.exit_code == 1
    assert "YAML" in result.stderr
    assert "Traceback" not in result.output


def test_graph_mermaid_by_default(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "graph", write(shout_yaml()))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("flowchart LR")
    assert '"result → text"' in result.stdout


def test_graph_dot(cli: CliRunner, write: Write) -> None:
    result = invoke(cli, "graph", write(shout_yaml()), "--format", "dot")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith('digraph "shout" {')
    assert result.stdout.rstrip().endswith("}")
    assert "->" in result.stdout


def test_schema_prints_valid_json_schema(cli: CliRunner) -> None:
    result = invoke(cli, "schema")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["type"] == "object"
    assert "steps" in schema["properties"]


def test_version(cli: CliRunner) -> None:
    result = invoke(cli, "--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("nanobrain ")


def test_importing_nanobrain_does_not_import_the_cli() -> None:
    code = "import sys, nanobrain; print('typer' in sys.modules, 'rich' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["False", "False"]


# -- a real process ---------------------------------------------------------------------------------
def _env(helpers_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(helpers_dir), env.get("PYTHONPATH")]))
    env.pop("NANOBRAIN_DEBUG", None)
    return env


def test_real_process_run_and_failure(write: Write, helpers_dir: Path) -> None:
    command = [sys.executable, "-m", "nanobrain"]
    done = subprocess.run(
        [*command, "run", write(shout_yaml()), "-i", "text=hey", "--json"],
        capture_output=True, text=True, env=_env(helpers_dir), timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"result": "HEY!"}
    failed = subprocess.run(
        [*command, "run", write(FAILING, "failing.yaml"), "-i", "text=x"],
        capture_output=True, text=True, env=_env(helpers_dir), timeout=60,
    )  # fmt: skip
    assert failed.returncode == 1
    assert "explode" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert failed.stdout == ""


def test_terminal_shows_live_progress_for_slow_runs(write: Write, helpers_dir: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    path = write(SLOW)
    child = pexpect.spawn(
        sys.executable, ["-m", "nanobrain", "run", str(path), "-i", "seconds=0.8"],
        env=_env(helpers_dir), encoding="utf-8", timeout=30, dimensions=(40, 120),
    )  # fmt: skip
    child.expect("slowpoke")  # the live view's title, shown while the slow step runs
    child.expect("wait")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "result:" in child.before and "0.8" in child.before
    assert "finished" in child.before  # the final view lists the finished steps


def test_ctrl_c_exits_130(write: Write, helpers_dir: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    path = write(SLOW)
    child = pexpect.spawn(
        sys.executable, ["-m", "nanobrain", "run", str(path), "-i", "seconds=30"],
        env=_env(helpers_dir), encoding="utf-8", timeout=30,
    )  # fmt: skip
    child.expect("wait")  # the step is running
    child.sendintr()
    child.expect("interrupted")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert "Traceback" not in child.before


def test_terminal_shows_no_progress_for_quick_runs(write: Write, helpers_dir: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        sys.executable, ["-m", "nanobrain", "run", str(write(shout_yaml())), "-i", "text=quick"],
        env=_env(helpers_dir), encoding="utf-8", timeout=30,
    )  # fmt: skip
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "QUICK!" in child.before
    assert "✓" not in child.before and "running" not in child.before


def test_a_persistent_input_without_default_may_come_from_its_store(
    cli: CliRunner, write: Write, tmp_path: Path
) -> None:
    store = tmp_path / "state.db"
    path = write(
        f"""
        name: remember
        inputs:
          text: {{type: str, kind: persistent, store: "sqlite+aiosqlite:///{store}", key: last}}
        outputs: {{result: str}}
        steps:
          upper: {{function: "{HELPERS}:upper"}}
        links:
          - {{from: inputs.text, to: upper.text}}
          - {{from: upper.result, to: outputs.result}}
        """
    )
    first = invoke(cli, "run", path, "--input", "text=saved", "--json")
    assert first.exit_code == 0, first.output
    again = invoke(cli, "run", path, "--json")  # nothing sent: the stored value is the input
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == {"result": "SAVED"}
