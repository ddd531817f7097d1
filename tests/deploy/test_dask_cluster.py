"""A workflow on a real Dask cluster: `dask scheduler` and two `dask worker` processes on 127.0.0.1.

The workflow names the cluster by address in its YAML (a named `dask` executor). A fan-out of
CPU-bound steps spreads over both workers; a worker killed with `kill -9` mid-run does not hang
the run: Dask reschedules its tasks on the other worker and the run completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.conftest import require

from nanobrain.config.loader import load_workflow
from nanobrain.errors import CapacityExceeded, ExecutorError, StepError

distributed = pytest.importorskip("distributed", reason="the Dask executor needs the `dask` extra")

pytestmark = pytest.mark.slow
STEPS = 4

STEPS_MODULE = '''
import os, signal, threading, time


def burn(seconds: float, log: str, name: str) -> dict:
    """CPU-bound for `seconds` of this process's CPU time; says which worker process ran it."""
    with open(log, "a") as out:
        out.write(f"{name} {os.getpid()}\\n")
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return {"step": name, "pid": os.getpid()}


def span(seconds: float, log: str, name: str) -> dict:
    """Holds its worker thread for `seconds`, logging when it started and ended."""
    with open(log, "a") as out:
        out.write(f"{name} {os.getpid()} start {time.time()}\\n")
    time.sleep(seconds)
    with open(log, "a") as out:
        out.write(f"{name} {os.getpid()} end {time.time()}\\n")
    return {"step": name, "pid": os.getpid()}


def die(seconds: float, log: str, name: str) -> dict:
    """Kills the worker process that runs it."""
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def untyped(seconds, log, name):
    """Takes any values."""
    return name


def lock(seconds: float, log: str, name: str) -> object:
    """Returns what cannot be pickled."""
    return threading.Lock()
'''


def flow_yaml(address: str, function: str = "burn", executor: str = "", step: str = "") -> str:
    """`STEPS` steps calling `cluster_steps.function`, with more `executor` and `step` options (`, key: value`)."""
    steps = "\n".join(
        f'  s{i}: {{function: "cluster_steps:{function}", executor: cluster{step}}}' for i in range(STEPS)
    )
    links = "\n".join(
        f"  - {{from: inputs.seconds, to: s{i}.seconds}}\n  - {{from: inputs.log, to: s{i}.log}}\n"
        f"  - {{from: inputs.name{i}, to: s{i}.name}}\n  - {{from: s{i}.result, to: outputs.r{i}}}"
        for i in range(STEPS)
    )
    names = ", ".join(f"name{i}: str" for i in range(STEPS))
    outputs = ", ".join(f"r{i}: null" for i in range(STEPS))
    return (
        f"name: spread\nexecutors:\n  cluster: {{kind: dask, address: \"{address}\"{executor}}}\n"
        f"inputs: {{seconds: float, log: str, {names}}}\noutputs: {{{outputs}}}\n"
        f"steps:\n{steps}\nlinks:\n{links}\n"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    address: str
    workers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)  # by pid


@contextlib.contextmanager
def start_cluster(
    tmp_path: Path, *, scheduler_env: dict[str, str] | None = None, worker_options: tuple[str, ...] = ()
) -> Iterator[Cluster]:
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, stopped on exit."""
    dask = Path(sys.executable).parent / "dask"
    require(dask.exists() or shutil.which("dask") is not None, "the `dask` command is not installed")
    command = str(dask) if dask.exists() else "dask"
    (tmp_path / "cluster_steps.py").write_text(STEPS_MODULE)
    # The workers import the steps' module by name, as a deployment installs the project's code on them.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    address = f"tcp://127.0.0.1:{free_port()}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": (tmp_path / "cluster.log").open("ab")}
    processes = [subprocess.Popen(
        [command, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
        env={**env, **(scheduler_env or {})}, **quiet,
    )]  # fmt: skip
    try:
        for name in ("w1", "w2"):
            processes.append(subprocess.Popen(
                [command, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
                 "--no-dashboard", "--name", name, *worker_options],
                env=env, **quiet,
            ))  # fmt: skip
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
            pids = set(client.run(os.getpid).values())
        assert pids == {p.pid for p in processes[1:]}, "the workers are the processes started here"
        yield Cluster(address, {p.pid: p for p in processes[1:]})
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with start_cluster(tmp_path) as started:
        yield started


def inputs(seconds: float, log: Path) -> dict[str, object]:
    return {"seconds": seconds, "log": str(log), **{f"name{i}": f"s{i}" for i in range(STEPS)}}


async def run_flow(
    tmp_path: Path, cluster: Cluster, values: dict[str, object], **options: str
) -> dict[str, dict[str, object]]:
    flow = tmp_path / "spread.yaml"
    flow.write_text(flow_yaml(cluster.address, **options))
    workflow = load_workflow(flow)
    try:
        return await asyncio.wait_for(workflow.run(values), timeout=120)  # never hangs
    finally:
        await workflow.aclose()


async def test_a_fan_out_spreads_over_both_workers(tmp_path: Path, cluster: Cluster) -> None:
    outputs = await run_flow(tmp_path, cluster, inputs(0.5, tmp_path / "steps.log"))
    assert sorted(outputs) == [f"r{i}" for i in range(STEPS)]
    assert [outputs[f"r{i}"]["step"] for i in range(STEPS)] == [f"s{i}" for i in range(STEPS)]
    used = {outputs[f"r{i}"]["pid"] for i in range(STEPS)}
    assert used == set(cluster.workers), f"the steps ran on {used}, the workers are {set(cluster.workers)}"


async def test_a_worker_killed_mid_run_does_not_stop_the_run(tmp_path: Path, cluster: Cluster) -> None:
    log = tmp_path / "steps.log"
    running = asyncio.ensure_future(run_flow(tmp_path, cluster, inputs(1.0, log)))
    deadline = time.monotonic() + 60
    started: set[int] = set()
    while len(started) < 2:  # both workers are busy with a step
        assert time.monotonic() < deadline and not running.done(), "the steps did not start on both workers"
        await asyncio.sleep(0.05)
        started = {int(line.split()[1]) for line in (log.read_text().splitlines() if log.exists() else [])}
    victim = min(started)
    os.kill(victim, signal.SIGKILL)
    outputs = await running
    survivor = set(cluster.workers) - {victim}
    assert {outputs[f"r{i}"]["pid"] for i in range(STEPS)} == survivor  # every result came from the survivor
    lines = log.read_text().splitlines()
    assert any(line.endswith(f" {victim}") for line in lines), "the killed worker had started a step"
    assert len(lines) > STEPS, "the killed worker's step was run again"


def started_on(log: Path) -> set[int]:
    """The worker processes that have started a step."""
    return {int(line.split()[1]) for line in (log.read_text().splitlines() if log.exists() else [])}


def most_at_once(log: Path) -> int:
    """The most steps that ran at the same time, from the start and end times they logged."""
    changes = []
    for line in log.read_text().splitlines():
        _, _, what, when = line.split()
        changes.append((float(when), 1 if what == "start" else -1))
    running = most = 0
    for _, change in sorted(changes, key=lambda c: (c[0], c[1])):  # an end before a start at the same time
        running += change
        most = max(most, running)
    return most


async def test_when_every_worker_is_killed_the_run_fails_naming_the_step(tmp_path: Path, cluster: Cluster) -> None:
    log = tmp_path / "steps.log"
    running = asyncio.ensure_future(
        run_flow(tmp_path, cluster, inputs(60.0, log), executor=", no_workers_timeout: 2")
    )
    deadline = time.monotonic() + 60
    while len(started_on(log)) < 2:
        assert time.monotonic() < deadline and not running.done(), "the steps did not start on both workers"
        await asyncio.sleep(0.05)
    for pid in cluster.workers:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    with pytest.raises(StepError) as caught:
        await asyncio.wait_for(running, timeout=60)  # no worker will ever come back: not a hang
    assert time.monotonic() - killed < 30
    error = caught.value.error
    assert isinstance(error, ExecutorError)
    assert caught.value.step in {f"s{i}" for i in range(STEPS)}
    assert str(error) == (
        f"step {caught.value.step!r} cannot run on Dask: the cluster at {cluster.address} has had no worker "
        "for 2s (were the workers stopped or killed?)"
    )


@pytest.fixture
def impatient_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A scheduler that gives up on a task after its first dead worker (the default allows three)."""
    with start_cluster(tmp_path, scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}) as started:
        yield started


@pytest.fixture
def cpu_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Each worker has two threads but declares one CPU resource."""
    with start_cluster(tmp_path, worker_options=("--nthreads", "2", "--resources", "CPU=1")) as started:
        yield started


async def test_a_task_that_keeps_killing_its_workers_fails_the_run_naming_the_step(
    tmp_path: Path, impatient_cluster: Cluster
) -> None:
    with pytest.raises(StepError) as caught:
        await run_flow(tmp_path, impatient_cluster, inputs(0.0, tmp_path / "steps.log"), function="die")
    error = caught.value.error
    assert isinstance(error, ExecutorError)
    assert type(error.__cause__) is distributed.KilledWorker
    assert str(error).startswith(
        f"step {caught.value.step!r} failed on Dask: the workers that ran it died each time, so Dask gave up ("
    )


async def test_values_that_cannot_be_pickled_name_the_step_and_the_reason(tmp_path: Path, cluster: Cluster) -> None:
    with pytest.raises(StepError) as caught:
        await run_flow(tmp_path, cluster, inputs(0.0, tmp_path / "steps.log"), function="lock")
    assert str(caught.value.error) == (
        f"step {caught.value.step!r} returned a value that cannot be sent back from its Dask worker "
        "(_thread.lock) TypeError: cannot pickle '_thread.lock' object"
    )
    unpicklable = {**inputs(0.0, tmp_path / "steps.log"), "log": threading.Lock()}
    flow = tmp_path / "untyped.yaml"
    flow.write_text(flow_yaml(cluster.address, function="untyped").replace("log: str", "log: null"))
    workflow = load_workflow(flow)
    try:
        with pytest.raises(StepError) as caught:
            await asyncio.wait_for(workflow.run(unpicklable), timeout=60)
    finally:
        await workflow.aclose()
    assert str(caught.value.error) == (
        f"step {caught.value.step!r} cannot run on Dask: its input 'log' (a _thread.lock) cannot be sent to the "
        "workers: TypeError: cannot pickle '_thread.lock' object"
    )


async def test_step_resources_are_dask_worker_resources(tmp_path: Path, cpu_cluster: Cluster) -> None:
    # Steps needing a CPU run one per worker, though each worker has two threads.
    cluster = cpu_cluster
    log = tmp_path / "steps.log"
    outputs = await run_flow(tmp_path, cluster, inputs(0.5, log), function="span", step=", resources: {cpu: 1}")
    assert sorted(outputs) == [f"r{i}" for i in range(STEPS)]
    assert most_at_once(log) == 2
    log.unlink()
    # Without declared needs, both threads of each worker are used: the figure above is the resources' doing.
    await run_flow(tmp_path, cluster, inputs(0.5, log), function="span")
    assert most_at_once(log) > 2
    # More than any worker offers: refused at once rather than queued forever.
    with pytest.raises(StepError) as caught:
        await run_flow(tmp_path, cluster, inputs(0.5, log), function="span", step=", resources: {cpu: 2}")
    assert isinstance(caught.value.error, CapacityExceeded)
    assert str(caught.value.error) == (
        f"step {caught.value.step!r} needs CPU=2 but no Dask worker at {cluster.address} offers that much "
        "(workers offer: CPU=1, CPU=1)"
    )
