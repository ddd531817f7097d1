"""A workflow on a real Dask cluster: `dask scheduler` and two `dask worker` processes on 127.0.0.1.

The workflow names the cluster by address in its YAML (a named `dask` executor). A fan-out of
CPU-bound steps spreads over both workers; a worker killed with `kill -9` mid-run does not hang
the run: Dask reschedules its tasks on the other worker and the run completes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.conftest import require

from nanobrain.config.loader import load_workflow

distributed = pytest.importorskip("distributed", reason="the Dask executor needs the `dask` extra")

pytestmark = pytest.mark.slow
STEPS = 4

STEPS_MODULE = '''
import os, time


def burn(seconds: float, log: str, name: str) -> dict:
    """CPU-bound for `seconds` of this process's CPU time; says which worker process ran it."""
    with open(log, "a") as out:
        out.write(f"{name} {os.getpid()}\\n")
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return {"step": name, "pid": os.getpid()}
'''


def flow_yaml(address: str) -> str:
    steps = "\n".join(
        f'  s{i}: {{function: "cluster_steps:burn", executor: cluster}}' for i in range(STEPS)
    )
    links = "\n".join(
        f"  - {{from: inputs.seconds, to: s{i}.seconds}}\n  - {{from: inputs.log, to: s{i}.log}}\n"
        f"  - {{from: inputs.name{i}, to: s{i}.name}}\n  - {{from: s{i}.result, to: outputs.r{i}}}"
        for i in range(STEPS)
    )
    names = ", ".join(f"name{i}: str" for i in range(STEPS))
    outputs = ", ".join(f"r{i}: dict" for i in range(STEPS))
    return (
        f"name: spread\nexecutors:\n  cluster: {{kind: dask, address: \"{address}\"}}\n"
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


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    dask = Path(sys.executable).parent / "dask"
    require(dask.exists() or shutil.which("dask") is not None, "the `dask` command is not installed")
    command = str(dask) if dask.exists() else "dask"
    (tmp_path / "cluster_steps.py").write_text(STEPS_MODULE)
    # The workers import the steps' module by name, as a deployment installs the project's code on them.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    address = f"tcp://127.0.0.1:{free_port()}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": (tmp_path / "cluster.log").open("ab"), "env": env}
    processes = [subprocess.Popen(
        [command, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"], **quiet
    )]  # fmt: skip
    try:
        for name in ("w1", "w2"):
            processes.append(subprocess.Popen(
                [command, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
                 "--no-dashboard", "--name", name],
                **quiet,
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


def inputs(seconds: float, log: Path) -> dict[str, object]:
    return {"seconds": seconds, "log": str(log), **{f"name{i}": f"s{i}" for i in range(STEPS)}}


async def run_flow(tmp_path: Path, cluster: Cluster, values: dict[str, object]) -> dict[str, dict[str, object]]:
    flow = tmp_path / "spread.yaml"
    flow.write_text(flow_yaml(cluster.address))
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
