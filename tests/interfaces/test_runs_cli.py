"""`nanobrain run --durable` and `nanobrain runs ...`, in real processes: a run killed with
SIGKILL resumes from the command line, a waiting run gets its input in a later process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

HELPERS = "nb_runs_helpers"
HELPERS_SOURCE = """
import os
import time


def first(text: str) -> str:
    with open(os.environ["NB_COUNT"], "a") as count:
        count.write("first\\n")
    return text.upper()


def second(text: str) -> str:
    with open(os.environ["NB_COUNT"], "a") as count:
        count.write("second\\n")
    time.sleep(float(os.environ.get("NB_SLEEP", "0")))
    return text + "!"


def add(a: int, b: int) -> int:
    return a + b
"""

CHAIN = f"""
name: two_steps
inputs: {{text: str}}
outputs: {{result: str}}
steps:
  first: {{function: "{HELPERS}:first"}}
  second: {{function: "{HELPERS}:second"}}
links:
  - {{from: inputs.text, to: first.text}}
  - {{from: first.result, to: second.text}}
  - {{from: second.result, to: outputs.result}}
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


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    (helpers / f"{HELPERS}.py").write_text(HELPERS_SOURCE, encoding="utf-8")
    home = tmp_path / "home"
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(helpers), os.environ.get("PYTHONPATH", "")]),
        "NANOBRAIN_HOME": str(home),
        "NB_COUNT": str(tmp_path / "count.txt"),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }


def write(tmp_path: Path, text: str, name: str = "workflow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def nanobrain(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from nanobrain.interfaces.cli import main; main()", *map(str, args)],
        env=env, capture_output=True, text=True, timeout=120,
    )


def test_a_run_killed_mid_way_resumes_from_the_command_line(tmp_path: Path, env: dict[str, str]) -> None:
    workflow = write(tmp_path, CHAIN)
    slow = {**env, "NB_SLEEP": "60"}
    child = subprocess.Popen(
        [sys.executable, "-c", "from nanobrain.interfaces.cli import main; main()",
         "run", str(workflow), "--input", "text=hi", "--durable", "--run-id", "k1"],
        env=slow, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    count = Path(env["NB_COUNT"])
    deadline = time.monotonic() + 60
    while "second" not in (count.read_text() if count.exists() else ""):
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)  # while `second` runs: `first` is journaled, `second` is not
    child.communicate()

    listed = nanobrain(env, "runs", "list")
    assert listed.returncode == 0, listed.stderr
    assert "k1" in listed.stdout and "running" in listed.stdout

    resumed = nanobrain(env, "runs", "resume", "k1")
    assert resumed.returncode == 0, resumed.stderr
    assert "result: HI!" in resumed.stdout
    assert "finished" in resumed.stderr
    # `first` completed before the kill and did not run again; `second` was in flight and did.
    assert count.read_text().split() == ["first", "second", "second"]

    again = nanobrain(env, "runs", "resume", "k1")  # a finished run answers with its result
    assert again.returncode == 0 and "result: HI!" in again.stdout
    assert count.read_text().split() == ["first", "second", "second"]


def test_a_waiting_run_gets_its_input_from_a_later_process(tmp_path: Path, env: dict[str, str]) -> None:
    workflow = write(tmp_path, ADD)
    started = nanobrain(env, "run", workflow, "--input", "a=1", "--durable", "--run-id", "w1")
    assert started.returncode == 0, started.stderr
    assert "waiting for input b" in started.stderr
    assert "nanobrain runs send w1" in started.stderr

    shown = nanobrain(env, "runs", "show", "w1")
    assert "status: waiting" in shown.stdout and str(workflow.resolve()) in shown.stdout

    sent = nanobrain(env, "runs", "send", "w1", "--input", "b=41")
    assert sent.returncode == 0, sent.stderr
    assert "total: 42" in sent.stdout
    assert "w1: finished" in sent.stderr
    assert "finished" in nanobrain(env, "runs", "list", "--status", "finished").stdout


def test_a_changed_workflow_is_refused_on_resume(tmp_path: Path, env: dict[str, str]) -> None:
    workflow = write(tmp_path, ADD)
    assert nanobrain(env, "run", workflow, "--input", "a=1", "--durable", "--run-id", "c1").returncode == 0
    renamed = textwrap.dedent(ADD).replace("  add: {", "  plus: {").replace(" add.", " plus.")
    workflow.write_text(renamed)
    refused = nanobrain(env, "runs", "send", "c1", "--input", "b=1")
    assert refused.returncode == 1
    assert "different definition" in refused.stderr
    assert "step 'add' removed" in refused.stderr and "step 'plus' added" in refused.stderr
    assert "Traceback" not in refused.stderr
    workflow.write_text(textwrap.dedent(ADD))  # the original definition: accepted again
    sent = nanobrain(env, "runs", "send", "c1", "--input", "b=1")
    assert sent.returncode == 0 and "total: 2" in sent.stdout


def test_unknown_runs_and_empty_sends_are_clear_errors(tmp_path: Path, env: dict[str, str]) -> None:
    missing = nanobrain(env, "runs", "resume", "nope")
    assert missing.returncode == 1
    assert "no durable run with id 'nope'" in missing.stderr and "Traceback" not in missing.stderr
    empty = nanobrain(env, "runs", "send", "nope")
    assert empty.returncode == 1 and "nothing to send" in empty.stderr


def test_sigterm_stops_a_resumed_run_which_stays_resumable(tmp_path: Path, env: dict[str, str]) -> None:
    workflow = write(tmp_path, CHAIN)
    count = Path(env["NB_COUNT"])
    # A first process journals `first`, then is killed in `second`.
    first = subprocess.Popen(
        [sys.executable, "-c", "from nanobrain.interfaces.cli import main; main()",
         "run", str(workflow), "--input", "text=hi", "--durable", "--run-id", "t1"],
        env={**env, "NB_SLEEP": "60"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while "second" not in (count.read_text() if count.exists() else ""):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    # The resume runs `second` again (slow); SIGTERM stops it cleanly.
    resumed = subprocess.Popen(
        [sys.executable, "-c", "from nanobrain.interfaces.cli import main; main()", "runs", "resume", "t1"],
        env={**env, "NB_SLEEP": "60"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    while count.read_text().split().count("second") < 2:
        assert resumed.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    resumed.send_signal(signal.SIGTERM)
    _, err = resumed.communicate(timeout=30)
    assert resumed.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert "status: interrupted" in nanobrain(env, "runs", "show", "t1").stdout
    finished = nanobrain(env, "runs", "resume", "t1")
    assert finished.returncode == 0 and "result: HI!" in finished.stdout
    assert count.read_text().split().count("first") == 1
