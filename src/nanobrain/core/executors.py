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
import os
import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Executor as _PoolExecutor
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager
from typing import Any

from .closing import AsyncClosing
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


# Defined on top of Executor (so imported after it): where the Dask executor lives.
from .dask_executor import DaskExecutor  # noqa: E402

EXECUTOR_KINDS: dict[str, type[Executor]] = {
    "inprocess": InProcessExecutor,
    "thread": ThreadExecutor,
    "process": ProcessExecutor,
    "dask": DaskExecutor,
}

DEFAULT_EXECUTOR = InProcessExecutor()
