"""Executors: in-process, thread pool, process pool (spawn) and Dask, each with sync and async steps."""

from __future__ import annotations

import asyncio
import os
import threading

import _process_helpers as helpers
import pytest

from nanobrain import (
    DaskExecutor,
    Executor,
    FunctionStep,
    InProcessExecutor,
    ProcessExecutor,
    StepError,
    ThreadExecutor,
    Workflow,
)
from nanobrain.core.executors import DEFAULT_EXECUTOR, EXECUTOR_KINDS

# Every Dask scheduler serves HTTP on 8787 when free, else on another port with this warning.
pytestmark = pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning")


def one_step(fn, executor: Executor, name: str | None = None) -> Workflow:
    return Workflow.sequence(FunctionStep(fn, name, executor=executor), name=f"on_{executor.kind}")


def test_executor_kinds_and_default():
    kinds = {"inprocess": InProcessExecutor, "thread": ThreadExecutor, "process": ProcessExecutor, "dask": DaskExecutor}
    for kind, cls in kinds.items():
        assert EXECUTOR_KINDS[kind] is cls
        assert cls.kind == kind
    assert isinstance(DEFAULT_EXECUTOR, InProcessExecutor)
    assert FunctionStep(helpers.square).executor is DEFAULT_EXECUTOR


# -- in process --------------------------------------------------------------------------------


async def test_in_process_executor_runs_sync_and_async_functions_in_the_event_loop():
    executor = InProcessExecutor()
    loop_id = id(asyncio.get_running_loop())
    sync = await one_step(helpers.square, executor).run(x=3)
    assert sync["result"] == {"value": 9, "pid": os.getpid(), "thread": threading.current_thread().name}
    result = (await one_step(helpers.async_square, executor).run(x=4))["result"]
    assert result["value"] == 16
    assert result["loop"] == loop_id
    assert result["pid"] == os.getpid()
    assert await executor.run(helpers.square, {"x": 2}) == {"value": 4, **helpers.where()}


# -- threads -----------------------------------------------------------------------------------


async def test_thread_executor_runs_sync_and_async_functions_in_worker_threads():
    async with ThreadExecutor(max_workers=2) as executor:
        sync = (await one_step(helpers.square, executor).run(x=3))["result"]
        assert sync["value"] == 9
        assert sync["thread"].startswith("nanobrain-step")
        result = (await one_step(helpers.async_square, executor).run(x=5))["result"]
        assert result["value"] == 25
        assert result["thread"].startswith("nanobrain-step")
        assert result["loop"] != id(asyncio.get_running_loop()), "an async function gets its own loop there"


async def test_thread_executor_runs_blocking_branches_side_by_side():
    # Both branches must be inside the barrier at the same time: only true parallelism gets through.
    barrier = threading.Barrier(2, timeout=10)

    def blocking(x: int) -> int:
        barrier.wait()
        return x

    async with ThreadExecutor(max_workers=2) as executor:
        wf = Workflow("w", inputs={"x": int}, outputs={"a": int, "b": int})
        for name in ("a", "b"):
            wf.add(FunctionStep(blocking, name, executor=executor))
            wf.link("inputs.x", f"{name}.x")
            wf.link(f"{name}.result", f"outputs.{name}")
        assert await wf.run(x=7) == {"a": 7, "b": 7}


async def test_thread_executor_failure_is_a_step_failure():
    async with ThreadExecutor() as executor:
        with pytest.raises(StepError) as info:
            await one_step(helpers.fail, executor).run(x=1)
    assert isinstance(info.value.__cause__, ValueError)
    assert str(info.value.__cause__) == "cannot handle 1"


async def test_pool_executors_close_twice_safely():
    executor = ThreadExecutor()
    await executor.run(helpers.square, {"x": 1})
    await executor.aclose()
    await executor.aclose()
    # A closed pool executor starts a fresh pool when used again.
    assert (await executor.run(helpers.square, {"x": 2}))["value"] == 4
    await executor.aclose()


async def test_a_thread_abandoned_after_a_timeout_does_not_hold_up_aclose():
    executor = ThreadExecutor()
    release = threading.Event()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(executor.run(release.wait, {"timeout": 30}), 0.1)
    finished = await executor.run(helpers.square, {"x": 3})  # the pool still works meanwhile
    assert finished["value"] == 9
    started = asyncio.get_running_loop().time()
    await executor.aclose()
    assert asyncio.get_running_loop().time() - started < 5
    release.set()


async def test_aclose_still_waits_for_work_nobody_gave_up_on():
    executor = ThreadExecutor()
    done = threading.Event()

    def work() -> None:
        threading.Event().wait(0.3)
        done.set()

    pending = asyncio.ensure_future(executor.run(work, {}))
    await asyncio.sleep(0.05)
    executor._pool.shutdown(wait=True)  # type: ignore[union-attr]
    assert done.is_set()
    await pending


STUCK_PROCESS = """
import asyncio, threading, time
from nanobrain.core.executors import ThreadExecutor, run_blocking

async def main():
    stuck = threading.Event()
    for runner in (ThreadExecutor().run, run_blocking):
        try:
            await asyncio.wait_for(runner(stuck.wait, {"timeout": 60}), 0.1)
        except TimeoutError:
            pass
    print("gave up", flush=True)

asyncio.run(main())
"""


def test_a_process_does_not_wait_for_abandoned_threads_at_exit():
    import subprocess
    import sys
    import time

    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", STUCK_PROCESS], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "gave up\n"
    assert time.monotonic() - started < 20  # not the 60 s the threads are stuck for


# -- processes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def process_executor():
    executor = ProcessExecutor(max_workers=2)
    yield executor
    asyncio.run(executor.aclose())


@pytest.mark.slow
async def test_process_executor_runs_sync_and_async_functions_in_another_process(process_executor):
    sync = (await one_step(helpers.square, process_executor).run(x=6))["result"]
    assert sync["value"] == 36
    assert sync["pid"] != os.getpid()
    result = (await one_step(helpers.async_square, process_executor).run(x=7))["result"]
    assert result["value"] == 49
    assert result["pid"] != os.getpid()


@pytest.mark.slow
async def test_process_executor_runs_a_function_decorated_with_step(process_executor):
    wf = one_step(helpers.cube.fn, process_executor, name="cube")
    assert await wf.run(x=3) == {"result": 27}


@pytest.mark.slow
async def test_process_executor_failure_keeps_the_original_exception(process_executor):
    with pytest.raises(StepError) as info:
        await one_step(helpers.fail, process_executor).run(x=2)
    assert isinstance(info.value.__cause__, ValueError)
    assert str(info.value.__cause__) == "cannot handle 2"


@pytest.mark.slow
async def test_process_executor_refuses_a_function_it_cannot_pickle(process_executor):
    with pytest.raises(StepError) as info:
        await one_step(lambda x: x, process_executor, name="local").run(x=1)
    assert info.value.step == "local"
    assert "pickle" in str(info.value.__cause__).lower()


# -- Dask --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    # In-process workers (fast), reached over TCP like a remote `tcp://scheduler:8786` would be.
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=None
    )
    yield cluster
    cluster.close()


@pytest.mark.slow
async def test_dask_executor_runs_sync_and_async_functions(dask_cluster):
    async with DaskExecutor(dask_cluster.scheduler_address) as executor:
        assert "tcp://127.0.0.1" in repr(executor)
        sync = (await one_step(helpers.square, executor).run(x=8))["result"]
        assert sync["value"] == 64
        assert sync["thread"] != threading.current_thread().name, "the work ran on a Dask worker"
        result = (await one_step(helpers.async_square, executor).run(x=9))["result"]
        assert result["value"] == 81
        assert result["loop"] != id(asyncio.get_running_loop())


@pytest.mark.slow
async def test_dask_executor_runs_local_functions_and_fan_out(dask_cluster):
    offset = 100

    def add_offset(x: int) -> int:  # a closure: Dask ships it by value
        return x + offset

    async with DaskExecutor(dask_cluster.scheduler_address) as executor:
        wf = Workflow("fan", inputs={"x": int}, outputs={f"b{i}": int for i in range(8)})
        for i in range(8):
            wf.add(FunctionStep(lambda x, i=i: add_offset(x) * i, f"b{i}", executor=executor))
            wf.link("inputs.x", f"b{i}.x")
            wf.link(f"b{i}.result", f"outputs.b{i}")
        assert await wf.run(x=1) == {f"b{i}": 101 * i for i in range(8)}


@pytest.mark.slow
async def test_dask_executor_failure_keeps_the_original_exception(dask_cluster):
    async with DaskExecutor(dask_cluster.scheduler_address) as executor:
        with pytest.raises(StepError) as info:
            await one_step(helpers.fail, executor).run(x=3)
    assert isinstance(info.value.__cause__, ValueError)
    assert "cannot handle 3" in str(info.value.__cause__)


@pytest.mark.slow
async def test_dask_executor_with_its_own_local_cluster_of_processes():
    async with DaskExecutor(n_workers=1, processes=True) as executor:
        assert repr(executor) == "DaskExecutor(address='LocalCluster')"
        sync = (await one_step(helpers.square, executor).run(x=10))["result"]
        assert sync["value"] == 100
        assert sync["pid"] != os.getpid(), "processes=True runs the work in a worker process"
        result = (await one_step(helpers.async_square, executor).run(x=11))["result"]
        assert result["value"] == 121
        assert result["pid"] == sync["pid"]
    assert executor._client is None and executor._cluster is None


async def test_a_step_in_a_thread_sees_its_context_and_its_events_reach_the_run() -> None:
    import threading

    from nanobrain import Token, current_context

    def blocking(text: str) -> str:
        context = current_context()
        assert context is not None and context.step == "blocking"
        for word in text.split():
            context.token(word + " ")
        return threading.current_thread().name

    step_ = FunctionStep(blocking, executor=ThreadExecutor(1))
    workflow = Workflow.sequence(step_, name="w")
    async with workflow:
        events = [e async for e in workflow.stream(text="one two three")]
    assert "".join(e.text for e in events if isinstance(e, Token)) == "one two three "
    assert events[-1].outputs["result"].startswith("nanobrain-step")
