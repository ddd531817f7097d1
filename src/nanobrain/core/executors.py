"""Executors decide where a step's function runs: in the event loop, a thread, a process, or Dask.

Every executor accepts sync and async functions. Async functions sent to a thread or a process
run in a fresh event loop there; Dask runs them natively.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import inspect
import itertools
import math
import os
import queue
import sys
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Executor as _PoolExecutor
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from typing import Any

from .closing import AsyncClosing
from .errors import CapacityExceeded, ExecutorError
from .resources import Admission, Resources, machine_capacity


def call_sync_or_async(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Run `fn(**kwargs)` to completion from synchronous code (a worker thread or process)."""
    result = fn(**kwargs)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


class _AbandonableFuture(Future[Any]):
    """A future that remembers when its waiter gave up on it while it was already running."""

    abandoned = False

    def cancel(self) -> bool:
        if not super().cancel():
            # Running: the thread cannot be stopped, but no one waits for the result any more.
            self.abandoned = not self.done()
            return False
        return True


_WorkItem = tuple[_AbandonableFuture, Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonThreadPool(_PoolExecutor):
    """A thread pool whose threads never keep the process alive.

    A function in a thread cannot be stopped. When its caller stops waiting (a step's timeout
    fired, its run was cancelled), the thread runs on, abandoned: `shutdown(wait=True)` does not
    wait for it, and since the threads are daemons, neither does the interpreter at exit (the
    standard pool joins its threads at exit, so one stuck function would hang the process forever).
    """

    _counter = itertools.count()

    def __init__(self, max_workers: int | None = None, thread_name_prefix: str = "nanobrain-worker") -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self.thread_name_prefix = thread_name_prefix
        self._work: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads: dict[threading.Thread, _AbandonableFuture | None] = {}
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot run new work after the pool was shut down")
            future = _AbandonableFuture()
            self._work.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._serve, name=f"{self.thread_name_prefix}_{next(self._counter)}", daemon=True
                )
                self._threads[thread] = None
                thread.start()
        return future

    def _serve(self) -> None:
        me = threading.current_thread()
        while (item := self._work.get()) is not None:
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                self._threads[me] = future
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                self._threads[me] = None
            del item, future, fn, args, kwargs  # do not keep the last call's values alive while idle
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._work.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in threads:
            self._work.put(None)
        if wait:
            for thread in threads:
                busy = self._threads.get(thread)
                if busy is None or not busy.abandoned:
                    thread.join()


_BLOCKING_POOL: DaemonThreadPool | None = None
_blocking_pool_lock = threading.Lock()


async def run_blocking(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Run a blocking `fn(**kwargs)` in a shared daemon thread, with the caller's context variables.

    For blocking functions that must not hold the event loop (a step with a timeout): if the
    caller stops waiting, the thread cannot be stopped, but it keeps neither the loop nor the
    process from ending.
    """
    global _BLOCKING_POOL
    if _BLOCKING_POOL is None:
        with _blocking_pool_lock:
            if _BLOCKING_POOL is None:
                _BLOCKING_POOL = DaemonThreadPool(thread_name_prefix="nanobrain-blocking")
    call = functools.partial(contextvars.copy_context().run, functools.partial(fn, **kwargs))
    return await asyncio.wrap_future(_BLOCKING_POOL.submit(call))


class Executor(AsyncClosing):
    """Runs functions somewhere. Subclasses override `run`; `aclose` releases resources.

    Steps that declare `resources` run only while their needs fit the executor's `capacity`
    beside the steps already running (default: this machine's CPUs, memory not limited).
    """

    kind = "executor"
    #: What steps that declare resources may use at once (None: the default above).
    capacity: Resources | None = None
    _admission: Admission | None = None

    async def run(self, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    def admission(self) -> Admission:
        """Counts the declared needs of the steps running here against the capacity."""
        if self._admission is None:
            self._admission = Admission(self.capacity or machine_capacity(), owner=f"its executor {self!r}")
        return self._admission

    def refusal(self, needs: Resources) -> str | None:
        """Why a step needing `needs` could never run here (a validation problem), or None."""
        return self.admission().refusal(needs)

    def admit(self, needs: Resources, *, who: str = "the step") -> AbstractAsyncContextManager[None]:
        """Wait until `needs` fits (raise CapacityExceeded if it never can); release it on exit."""
        return self.admission().admit(needs, who=who)

    async def aclose(self) -> None:
        """Release threads, processes or connections. Safe to call twice."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class InProcessExecutor(Executor):
    """The default: async functions are awaited in the event loop, sync ones called directly."""

    kind = "inprocess"

    def __init__(self, *, capacity: Resources | None = None) -> None:
        self.capacity = capacity

    async def run(self, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        result = fn(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result


class _PoolBackedExecutor(Executor):
    #: Threads share memory, so they can carry the caller's context variables; processes cannot.
    copies_context = False

    def __init__(self, max_workers: int | None = None, *, capacity: Resources | None = None) -> None:
        self.max_workers = max_workers
        self.capacity = capacity
        self._pool: _PoolExecutor | None = None
        #: Work still running whose caller stopped waiting (a timeout, a cancelled run).
        self._abandoned: set[Future[Any]] = set()

    def _make_pool(self) -> _PoolExecutor:
        raise NotImplementedError

    async def run(self, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        if self._pool is None:
            self._pool = self._make_pool()
        loop = asyncio.get_running_loop()
        call = functools.partial(call_sync_or_async, fn, kwargs)
        if self.copies_context:
            # The step sees its run's context (current_context(), token and event reporting).
            call = functools.partial(contextvars.copy_context().run, call)
        future = self._pool.submit(call)
        try:
            return await asyncio.wrap_future(future, loop=loop)
        except asyncio.CancelledError:
            if not future.done():
                self._abandoned.add(future)
                future.add_done_callback(self._abandoned.discard)
            raise

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            if self._abandoned:
                self._stop_abandoned(pool)
            self._abandoned.clear()
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    def _stop_abandoned(self, pool: _PoolExecutor) -> None:
        """Make sure work nobody waits for does not hold up shutdown (threads: see DaemonThreadPool)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_workers={self.max_workers})"


class ThreadExecutor(_PoolBackedExecutor):
    """A thread pool, for blocking functions (I/O, C extensions that release the GIL).

    A timeout stops waiting for the thread but cannot stop the thread itself; the abandoned
    thread keeps neither `aclose` nor the process from ending (see `DaemonThreadPool`).
    """

    kind = "thread"
    copies_context = True

    def _make_pool(self) -> _PoolExecutor:
        return DaemonThreadPool(self.max_workers, thread_name_prefix="nanobrain-step")


class ProcessExecutor(_PoolBackedExecutor):
    """A process pool, for CPU-bound functions. Functions and values must be picklable.

    Uses the `spawn` start method: forking a process that runs an event loop is unsafe.
    """

    kind = "process"

    def _make_pool(self) -> _PoolExecutor:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(self.max_workers, mp_context=multiprocessing.get_context("spawn"))

    async def run(self, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        return await super().run(_by_name_if_wrapped(fn), kwargs)

    def _stop_abandoned(self, pool: _PoolExecutor) -> None:
        # A function in another process cannot be told to stop, and shutting the pool down waits
        # for it (so would the interpreter at exit): end the pool's processes instead.
        # (ProcessPoolExecutor keeps its workers by pid in `_processes`; Python 3.14 adds kill_workers().)
        processes = getattr(pool, "_processes", None) or {}
        for process in list(processes.values()):
            process.kill()


def _by_name_if_wrapped(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, or a reference by name when a decorator such as `@step` replaced it in its module.

    pickle sends a module-level function as `module.qualname`; after `@step` that name holds the
    step (which keeps the function as `.fn`), so pickling the function itself would fail.
    """
    qualname = getattr(fn, "__qualname__", "")
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    if module is None or "<locals>" in qualname:
        return fn
    holder: Any = module
    for part in qualname.split("."):
        holder = getattr(holder, part, None)
    if holder is not fn and getattr(holder, "fn", None) is fn:
        return _WrappedFunction(module.__name__, qualname)
    return fn


class _WrappedFunction:
    """Calls `module.qualname.fn` where it is unpickled (in the worker process)."""

    __slots__ = ("module", "qualname")

    def __init__(self, module: str, qualname: str) -> None:
        self.module = module
        self.qualname = qualname

    def __call__(self, **kwargs: Any) -> Any:
        holder: Any = importlib.import_module(self.module)
        for part in self.qualname.split("."):
            holder = getattr(holder, part)
        return holder.fn(**kwargs)


#: Dask worker resources a step's declared needs map to (`dask worker --resources "CPU=2 MEMORY=4e9"`).
DASK_RESOURCE_NAMES = {"cpu": "CPU", "memory": "MEMORY"}
_dask_resources: ContextVar[dict[str, float] | None] = ContextVar("nanobrain_dask_resources", default=None)


class DaskExecutor(Executor):
    """Runs functions on a Dask cluster: a `LocalCluster` by default, or `address` like `tcp://host:8786`.

    Needs the `dask` extra. Async functions run natively on the workers. A timeout cancels the
    Dask future. A worker that dies is Dask's to handle (it runs the task again elsewhere); when
    it cannot (the task killed too many workers, or no worker is left for `no_workers_timeout`
    seconds) the step fails with ExecutorError instead of waiting forever. Values that cannot be
    pickled fail the step with the pickling error's reason.

    Declared step resources map to the workers' Dask resources `CPU` and `MEMORY` when the workers
    declare them (Dask then queues tasks until a worker has them free); otherwise they count
    against `capacity`, by default the cluster's threads and memory.
    """

    kind = "dask"
    #: How often a waiting step looks whether the cluster still has a worker that can run it.
    check_every = 1.0

    def __init__(
        self,
        address: str | None = None,
        *,
        n_workers: int = 2,
        threads_per_worker: int = 1,
        processes: bool = True,
        capacity: Resources | None = None,
        no_workers_timeout: float = 60.0,
    ) -> None:
        if no_workers_timeout <= 0:
            raise ValueError(f"no_workers_timeout must be positive, got {no_workers_timeout}")
        self.address = address
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.processes = processes
        self.capacity = capacity
        self.no_workers_timeout = no_workers_timeout
        self._client: Any = None
        self._cluster: Any = None
        self._lock: asyncio.Lock | None = None
        self._workers: tuple[float, asyncio.Future[dict[str, Any]]] | None = None

    async def client(self) -> Any:
        """The connected `distributed.Client`, created on first use."""
        if self._client is not None:
            return self._client
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                from ..optional import require

                distributed = require("distributed", extra="dask", purpose="the Dask executor")
                if self.address is None:
                    # Worker processes talk TCP on the loopback only; in-process workers use
                    # Dask's inproc transport, which refuses a host (the cluster would not start).
                    network = {"host": "127.0.0.1"} if self.processes else {}
                    self._cluster = await distributed.LocalCluster(
                        n_workers=self.n_workers,
                        threads_per_worker=self.threads_per_worker,
                        processes=self.processes,
                        dashboard_address=None,
                        asynchronous=True,
                        **network,
                    )
                    self._client = await distributed.Client(self._cluster, asynchronous=True)
                else:
                    self._client = await distributed.Client(self.address, asynchronous=True)
        return self._client

    async def run(self, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        client = await self.client()
        step = _step_name()
        resources = _dask_resources.get()
        try:
            future = client.submit(_checked(fn), **kwargs, pure=False, resources=resources)
        except Exception as exc:  # Dask pickles the task (function and inputs) as it submits it
            raise ExecutorError(f"{step} cannot run on Dask: {_unpicklable(fn, kwargs, exc)}") from exc
        try:
            outcome = await self._result(client, future, step, resources or {})
        except asyncio.CancelledError:
            await client.cancel(future)
            raise
        except ExecutorError:
            await client.cancel(future)
            raise
        except Exception as exc:
            if type(exc).__name__ == "KilledWorker":
                raise ExecutorError(
                    f"{step} failed on Dask: the workers that ran it died each time, so Dask gave up ({exc})"
                ) from exc
            if type(exc).__name__ == "FutureCancelledError":
                raise ExecutorError(f"{step} failed on Dask: the cluster cancelled its task ({exc})") from exc
            raise
        status, value = outcome
        if status == "unpicklable":
            raise ExecutorError(f"{step} returned a value that cannot be sent back from its Dask worker {value}")
        return value if status == "value" else _loads(value)

    async def _result(self, client: Any, future: Any, step: str, resources: dict[str, float]) -> Any:
        """The task's result; ExecutorError when the cluster has had no worker able to run it for too long."""
        waiting = asyncio.ensure_future(_await(future))
        stranded_since: float | None = None
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=self.check_every)
                if done:
                    return waiting.result()
                loop = asyncio.get_running_loop()
                if await self._can_run(resources):
                    stranded_since = None
                    continue
                now = loop.time()
                stranded_since = stranded_since if stranded_since is not None else now
                if now - stranded_since >= self.no_workers_timeout:
                    needing = " with " + _dask_resource_text(resources) if resources else ""
                    raise ExecutorError(
                        f"{step} cannot run on Dask: the cluster at {self._where()} has had no worker{needing} "
                        f"for {self.no_workers_timeout:g}s (were the workers stopped or killed?)"
                    )
        finally:
            if not waiting.done():
                waiting.cancel()

    async def _can_run(self, resources: dict[str, float]) -> bool:
        """Whether a worker is connected that offers `resources` (any worker when none are asked for)."""
        try:
            workers = await self.worker_info()
        except OSError:  # the scheduler itself is gone: no worker can run anything
            return False
        return any(
            all(info.get("resources", {}).get(name, 0) >= amount for name, amount in resources.items())
            for info in workers.values()
        )

    async def worker_info(self) -> dict[str, dict[str, Any]]:
        """The scheduler's view of its workers, fetched at most once per `check_every` for all waiting steps."""
        loop = asyncio.get_running_loop()
        cached = self._workers
        if cached is None or loop.time() - cached[0] >= self.check_every or (
            cached[1].done() and cached[1].exception() is not None
        ):
            client = await self.client()
            cached = self._workers = (loop.time(), asyncio.ensure_future(client.scheduler.identity()))
        identity = await asyncio.shield(cached[1])
        return dict(identity.get("workers", {}))

    @asynccontextmanager
    async def _admitted(self, needs: Resources, who: str) -> AsyncIterator[None]:
        asked = {DASK_RESOURCE_NAMES[name]: getattr(needs, name) for name in ("cpu", "memory") if getattr(needs, name)}
        workers = await self.worker_info()
        declared = [info.get("resources", {}) for info in workers.values()]
        if asked and all(any(name in offered for offered in declared) for name in asked):
            # The workers declare these resources: Dask itself queues the task until one has them free.
            if not any(all(offered.get(n, 0) >= v for n, v in asked.items()) for offered in declared):
                largest = ", ".join(_dask_resource_text(offered) for offered in declared if offered)
                raise CapacityExceeded(
                    f"{who} needs {_dask_resource_text(asked)} but no Dask worker at {self._where()} offers that "
                    f"much (workers offer: {largest})"
                )
            token = _dask_resources.set(asked)
            try:
                yield
            finally:
                _dask_resources.reset(token)
            return
        if self._admission is None and self.capacity is None:
            self._admission = Admission(_cluster_capacity(workers), owner=f"the Dask cluster at {self._where()}")
        async with self.admission().admit(needs, who=who):
            yield

    def admit(self, needs: Resources, *, who: str = "the step") -> AbstractAsyncContextManager[None]:
        return self._admitted(needs, who)

    def refusal(self, needs: Resources) -> str | None:
        # Without a configured capacity, what the cluster offers is known only once connected.
        return super().refusal(needs) if self.capacity is not None else None

    def _where(self) -> str:
        return self.address or "the local cluster"

    async def aclose(self) -> None:
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        self._workers = None
        if client is not None:
            await client.close()
        if cluster is not None:
            await cluster.close()

    def __repr__(self) -> str:
        return f"DaskExecutor(address={self.address or 'LocalCluster'!r})"


def _step_name() -> str:
    from .context import current_context

    context = current_context()
    return f"step {context.step!r}" if context is not None else "a function"


def _unpicklable(fn: Callable[..., Any], kwargs: Mapping[str, Any], error: Exception) -> str:
    """Which input (or the function) cannot be pickled, and why (found again, one value at a time)."""
    import cloudpickle

    for name, value in [*kwargs.items(), ("", fn)]:
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            what = f"its input {name!r}" if name else "its function"
            return f"{what} ({_type_name(value)}) cannot be sent to the workers: {type(exc).__name__}: {exc}"
    return f"its task cannot be sent to the workers: {type(error).__name__}: {error}"


def _type_name(value: object) -> str:
    kind = type(value)
    return f"a {kind.__qualname__}" if kind.__module__ == "builtins" else f"a {kind.__module__}.{kind.__qualname__}"


def _dask_resource_text(resources: Mapping[str, float]) -> str:
    return " ".join(f"{name}={amount:g}" for name, amount in resources.items())


def _cluster_capacity(workers: Mapping[str, Mapping[str, Any]]) -> Resources:
    threads = sum(info.get("nthreads", 0) for info in workers.values())
    limits = [info.get("memory_limit") or 0 for info in workers.values()]
    memory = float(sum(limits)) if limits and all(limits) else math.inf
    return Resources(cpu=threads or 1, memory=memory)


def _loads(payload: bytes) -> Any:
    import pickle

    return pickle.loads(payload)


def _checked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, returning its result pickled on the worker, or the reason it cannot be.

    Dask would fail to send an unpicklable result far from the step (in the worker's log); pickling
    it where it is made keeps the reason and costs nothing more: the bytes are not pickled again.
    The wrappers are local functions so that cloudpickle sends them by value: the workers need the
    step's code, not NanoBrain.
    """

    def pickled(result: Any) -> tuple[str, Any]:
        import pickle

        if result is None or type(result) in (int, float, str, bool):
            return ("value", result)
        try:
            return ("pickled", pickle.dumps(result, protocol=5))
        except Exception:
            try:
                import cloudpickle

                return ("pickled", cloudpickle.dumps(result, protocol=5))
            except Exception as exc:
                kind = type(result)
                return ("unpicklable", f"({kind.__module__}.{kind.__qualname__}) {type(exc).__name__}: {exc}")

    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__):

        async def run_async(**kwargs: Any) -> tuple[str, Any]:
            return pickled(await fn(**kwargs))

        run_async.__name__ = getattr(fn, "__name__", "step")  # Dask names the task after it
        return run_async

    def run(**kwargs: Any) -> tuple[str, Any]:
        import asyncio
        import inspect

        result = fn(**kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
        return pickled(result)

    async def _awaited(awaitable: Any) -> Any:
        return await awaitable

    run.__name__ = getattr(fn, "__name__", "step")
    return run


EXECUTOR_KINDS: dict[str, type[Executor]] = {
    "inprocess": InProcessExecutor,
    "thread": ThreadExecutor,
    "process": ProcessExecutor,
    "dask": DaskExecutor,
}

DEFAULT_EXECUTOR = InProcessExecutor()
