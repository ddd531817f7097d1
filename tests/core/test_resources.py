"""Resource-aware admission: steps declare CPUs and memory, executors admit them only while they fit
(waiting instead of overcommitting), and a step that could never fit is refused when the workflow is built."""

from __future__ import annotations

import asyncio
import math
import textwrap
import threading
import time
from pathlib import Path

import pytest

import nanobrain as nb
from nanobrain import FunctionStep, Link, ThreadExecutor, Workflow
from nanobrain.config import load_workflow
from nanobrain.core.errors import CapacityExceeded, StepError, WorkflowValidationError
from nanobrain.core.resources import Admission, Resources, parse_memory


class Gauge:
    """How many calls run at once, and the most that ever did."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def busy(self, seconds: float) -> float:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(seconds)
        with self.lock:
            self.now -= 1
        return seconds


GAUGE = Gauge()


def busy(seconds: float) -> float:
    return GAUGE.busy(seconds)


def fan_out(n: int, executor: nb.Executor, needs: Resources | dict[str, object] | None) -> Workflow:
    steps = [FunctionStep(busy, f"s{i}", executor=executor, resources=needs) for i in range(n)]
    links = [Link("inputs.seconds", f"s{i}.seconds") for i in range(n)]
    links += [Link(f"s{i}.result", f"outputs.r{i}") for i in range(n)]
    return Workflow(
        "fan", inputs={"seconds": float}, outputs={f"r{i}": float for i in range(n)}, steps=steps, links=links
    )


@pytest.fixture(autouse=True)
def fresh_gauge() -> None:
    global GAUGE
    GAUGE = Gauge()


def test_memory_sizes_and_resources() -> None:
    assert parse_memory("512MiB") == 512 * 1024**2
    assert parse_memory("2GB") == 2e9
    assert parse_memory("1.5 GiB") == 1.5 * 1024**3
    assert parse_memory("4e9") == 4e9
    assert parse_memory(1024) == 1024
    for bad in ("lots", "12 parsecs", "-1MiB", True):
        with pytest.raises(ValueError, match=r"memory must be|cannot be negative"):
            parse_memory(bad)  # type: ignore[arg-type]
    assert Resources.of({"cpu": 1, "memory": "512MiB"}) == Resources(1, 512 * 1024**2)
    with pytest.raises(ValueError, match="resources are cpu and memory, got 'gpu'"):
        Resources.of({"gpu": 1})
    with pytest.raises(ValueError, match="step 's': resources: cpu cannot be negative"):
        FunctionStep(busy, "s", resources={"cpu": -1})
    assert str(Resources(2, math.inf)) == "cpu 2, memory unlimited"
    assert str(Resources(memory="512MiB")) == "memory 512 MiB"


async def test_at_most_capacity_runs_at_once_and_the_rest_wait() -> None:
    # Eight threads could run all six steps at once; two CPUs of capacity admit two.
    async with ThreadExecutor(max_workers=8, capacity=Resources(cpu=2)) as executor:
        outputs = await asyncio.wait_for(fan_out(6, executor, {"cpu": 1}).run(seconds=0.15), timeout=30)
        assert sorted(outputs) == [f"r{i}" for i in range(6)]
        assert GAUGE.most == 2
        assert executor.admission().in_use == Resources()  # everything given back


async def test_without_declared_resources_nothing_is_held_back() -> None:
    # The same fan-out without declared needs: the test above would fail if admission did nothing.
    async with ThreadExecutor(max_workers=8, capacity=Resources(cpu=2)) as executor:
        await asyncio.wait_for(fan_out(6, executor, None).run(seconds=0.3), timeout=30)
        assert GAUGE.most > 2


async def test_memory_is_counted_too() -> None:
    async with ThreadExecutor(max_workers=8, capacity=Resources(cpu=8, memory="1GiB")) as executor:
        await asyncio.wait_for(fan_out(4, executor, {"memory": "512MiB"}).run(seconds=0.15), timeout=30)
        assert GAUGE.most == 2


def test_a_step_that_could_never_fit_is_refused_when_the_workflow_is_built() -> None:
    executor = ThreadExecutor(max_workers=2, capacity=Resources(cpu=2, memory="1GiB"))
    with pytest.raises(WorkflowValidationError) as caught:
        fan_out(2, executor, {"cpu": 4}).validate()
    text = str(caught.value)
    assert "steps.s0.resources: step 's0' needs cpu 4 but its executor ThreadExecutor(max_workers=2)" in text
    assert "has cpu 2, memory 1 GiB in all" in text
    assert len(caught.value.problems) == 2


async def test_a_step_that_could_never_fit_fails_at_once_when_its_executor_shrank() -> None:
    executor = ThreadExecutor(max_workers=2)
    workflow = fan_out(1, executor, {"cpu": 1})
    workflow.plan()  # valid against this machine's CPUs
    executor.capacity, executor._admission = Resources(cpu=0.5), None
    with pytest.raises(StepError) as caught:
        await asyncio.wait_for(workflow.run(seconds=0.0), timeout=10)  # refused, not waiting forever
    assert isinstance(caught.value.error, CapacityExceeded)
    assert "step 's0' needs cpu 1" in str(caught.value)
    await executor.aclose()


async def test_admission_is_first_come_first_served_and_cancel_safe() -> None:
    admission = Admission(Resources(cpu=2))
    order: list[str] = []
    hold = asyncio.Event()

    async def use(name: str, cpu: float) -> None:
        async with admission.admit(Resources(cpu=cpu)):
            order.append(name)
            await hold.wait()

    first = asyncio.create_task(use("first", 1))
    await asyncio.sleep(0)
    big = asyncio.create_task(use("big", 2))  # waits for everything
    await asyncio.sleep(0)
    small = asyncio.create_task(use("small", 1))  # would fit now, but must not overtake `big`
    await asyncio.sleep(0.01)
    assert order == ["first"]
    big.cancel()  # giving up while waiting lets the next one in
    await asyncio.sleep(0.01)
    assert order == ["first", "small"]
    assert admission.in_use == Resources(cpu=2)
    hold.set()
    await asyncio.gather(first, small)
    with pytest.raises(asyncio.CancelledError):
        await big
    assert admission.in_use == Resources()


def test_yaml_declares_step_resources_and_executor_capacity(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        textwrap.dedent(
            """
            name: admitted
            inputs: {seconds: float}
            outputs: {r: float}
            executors:
              pool: {kind: thread, max_workers: 8, capacity: {cpu: 2, memory: 4GiB}}
            steps:
              s: {function: "tests.core.test_resources:busy", executor: pool, resources: {cpu: 1, memory: 512MiB}}
            links:
              - {from: inputs.seconds, to: s.seconds}
              - {from: s.result, to: outputs.r}
            """
        )
    )
    workflow = load_workflow(path)
    step = workflow.steps["s"]
    assert step.resources == Resources(cpu=1, memory=512 * 1024**2)
    assert step.executor.capacity == Resources(cpu=2, memory=4 * 1024**3)


def test_yaml_problems_with_resources_are_located(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        textwrap.dedent(
            """
            name: refused
            inputs: {seconds: float}
            outputs: {r: float, q: float}
            executors:
              pool: {kind: thread, capacity: {cpu: 2}}
            steps:
              s: {function: "tests.core.test_resources:busy", executor: pool, resources: {cpu: 3}}
              t: {function: "tests.core.test_resources:busy", resources: {memory: lots}}
            links:
              - {from: inputs.seconds, to: s.seconds}
              - {from: s.result, to: outputs.r}
              - {from: inputs.seconds, to: t.seconds}
              - {from: t.result, to: outputs.q}
            """
        )
    )
    with pytest.raises(nb.ConfigError) as caught:
        load_workflow(path)
    problems = {p.where: p.message for p in caught.value.problems}
    assert sorted(problems) == ["steps.s", "steps.t.resources.memory"], problems
    assert "step 's' needs cpu 3 but its executor" in problems["steps.s"]
    assert "memory must be a size like '512MiB'" in problems["steps.t.resources.memory"]
