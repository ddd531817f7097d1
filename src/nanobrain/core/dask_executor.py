"""The Dask executor: steps run on a Dask cluster, a local one or one at a scheduler's address.

Dask reschedules the tasks of a worker that dies; what it cannot recover from (a task that keeps
killing its workers, a cluster left without workers, values that cannot be pickled) fails the
step with ExecutorError naming it, never a wait without end.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from typing import Any

from .errors import CapacityExceeded, ExecutorError
from .executors import Executor, _await
from .resources import Admission, Resources

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
        #: The last look at the workers: (its loop, when, the scheduler's answer), shared by waiting steps.
        self._workers: tuple[asyncio.AbstractEventLoop, float, asyncio.Future[dict[str, Any]]] | None = None

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
            from distributed import KilledWorker
            from distributed.client import FutureCancelledError

            if isinstance(exc, KilledWorker):
                raise ExecutorError(
                    f"{step} failed on Dask: the workers that ran it died each time, so Dask gave up ({exc})"
                ) from exc
            if isinstance(exc, FutureCancelledError):
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
            workers = await asyncio.wait_for(self.worker_info(), timeout=max(10.0, self.check_every))
        except (OSError, TimeoutError):  # the scheduler itself is gone or stuck: no worker can run anything
            return False
        return any(
            all(info.get("resources", {}).get(name, 0) >= amount for name, amount in resources.items())
            for info in workers.values()
        )

    async def worker_info(self) -> dict[str, dict[str, Any]]:
        """The scheduler's view of its workers, fetched at most once per `check_every` for all waiting steps."""
        loop = asyncio.get_running_loop()
        cached = self._workers
        if (
            cached is None
            or cached[0] is not loop
            or loop.time() - cached[1] >= self.check_every
            or (cached[2].done() and (cached[2].cancelled() or cached[2].exception() is not None))
        ):
            client = await self.client()
            cached = self._workers = (loop, loop.time(), asyncio.ensure_future(client.scheduler.identity()))
        identity = await asyncio.shield(cached[2])
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
