"""`nanobrain run` ends promptly and cleanly: after a step's timeout, on Ctrl-C, on SIGTERM and SIGHUP.

Real processes and real signals; the steps block or misbehave on purpose.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

HELPERS = "nb_stop_helpers"
HELPERS_SOURCE = '''
import asyncio
import sys
import time


def block(seconds: str) -> str:
    print("blocking", file=sys.stderr, flush=True)
    time.sleep(float(seconds))
    return seconds


async def stubborn(seconds: str) -> str:
    try:
        await asyncio.sleep(float(seconds))
    except asyncio.CancelledError:
        await asyncio.sleep(0.2)
        return "returned after its timeout"
    return seconds


async def slow(seconds: str) -> str:
    print("waiting", file=sys.stderr, flush=True)
    await asyncio.sleep(float(seconds))
    return seconds
'''


def _workflow(step: str) -> str:
    return textwrap.dedent(
        f"""
        name: stopper
        inputs: {{seconds: str}}
        outputs: {{result: str}}
        steps:
          wait: {step}
        links:
          - {{from: inputs.seconds, to: wait.seconds}}
          - {{from: wait.result, to: outputs.result}}
        """
    )


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / f"{HELPERS}.py").write_text(HELPERS_SOURCE)
    env = {k: v for k, v in os.environ.items() if k != "NANOBRAIN_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))

    def start(step: str, seconds: str, **popen: object) -> subprocess.Popen[str]:
        path = tmp_path / "workflow.yaml"
        path.write_text(_workflow(step))
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            [sys.executable, "-m", "nanobrain", "run", str(path), "-i", f"seconds={seconds}"],
            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen,
        )  # fmt: skip

    return start


@pytest.mark.parametrize(
    "step",
    [
        f'{{function: "{HELPERS}:block", timeout: 0.5}}',
        f'{{function: "{HELPERS}:block", timeout: 0.5, executor: thread}}',
        f'{{function: "{HELPERS}:block", timeout: 2, executor: process}}',
    ],
    ids=["in-process", "thread-executor", "process-executor"],
)
def test_a_blocking_step_that_times_out_ends_the_process_promptly(run, step: str) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    child = run(step, "60")
    out, err = child.communicate(timeout=30)  # before the fix: the process waited 60 s for the thread
    assert time.monotonic() - started < 20
    assert child.returncode == 1, err
    assert "wait" in err and "did not finish within" in err and "Traceback" not in err
    assert out == ""


def test_a_step_that_returns_after_its_timeout_is_a_timeout(run) -> None:  # type: ignore[no-untyped-def]
    child = run(f'{{function: "{HELPERS}:stubborn", timeout: 0.3}}', "30")
    out, err = child.communicate(timeout=30)
    assert child.returncode == 1, (out, err)
    assert "did not finish within" in err
    assert "returned after its timeout" not in out


def _wait_for(child: subprocess.Popen[str], text: str) -> None:
    assert child.stderr is not None
    line = child.stderr.readline()
    assert text in line, line


def test_the_first_ctrl_c_stops_a_blocking_step(run) -> None:  # type: ignore[no-untyped-def]
    child = run(f'{{function: "{HELPERS}:block"}}', "60")  # blocks the event loop itself
    _wait_for(child, "blocking")
    started = time.monotonic()
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert child.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_stop_signals_end_a_run_cleanly(run, signum: signal.Signals) -> None:  # type: ignore[no-untyped-def]
    child = run(f'{{function: "{HELPERS}:slow"}}', "60")
    _wait_for(child, "waiting")
    child.send_signal(signum)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 128 + signum, err
    assert "interrupted" in err and "Traceback" not in err
    assert out == ""


def test_a_closed_stdout_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "workflow.yaml"
    path.write_text(_workflow('{function: "nb_stop_helpers:slow"}'))
    (tmp_path / f"{HELPERS}.py").write_text(HELPERS_SOURCE)
    env = {k: v for k, v in os.environ.items() if k != "NANOBRAIN_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    command = f'"{sys.executable}" -m nanobrain run "{path}" -i seconds=0 >&-'
    done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "standard output is closed" in done.stderr
    assert "Traceback" not in done.stderr and "AttributeError" not in done.stderr
