"""Prometheus metrics from the run event stream: `RunMetrics` is an event sink.

    metrics = enable_metrics()            # process-wide: every run from now on is counted
    start_metrics_server(9464)            # or mount `metrics_app()` at /metrics

Labels are structural (workflow path, step, provider, model, tool, pool, processor, error type)
and bounded (see `labels`). Pools' live figures (queue depth, in flight, healthy processors) are
read at scrape time from the pools given to `watch_pool`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..optional import missing_extra

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.registry import Collector
except ModuleNotFoundError as exc:
    raise missing_extra(exc, extra="observability", purpose="metrics") from None

from ..core.events import (
    Custom,
    RunEvent,
    RunFailed,
    RunFinished,
    RunStarted,
    StepFailed,
    StepFinished,
    StepStarted,
)
from ..core.sinks import instrument
from .labels import BoundedLabel, error_type
from .stats import Distribution

if TYPE_CHECKING:
    from ..infrastructure.parallel.pool import ProcessorPool

STEP_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)

#: Events of the parallel layer counted by pool and name (the Custom events it reports into runs).
POOL_EVENTS = frozenset(
    {
        "breaker_opened",
        "breaker_half_open",
        "breaker_closed",
        "processor_healthy",
        "processor_unhealthy",
        "processor_added",
        "processor_removed",
        "request_retried",
        "pool_scaled",
        "session_moved",
    }
)
#: Raw paths remembered for fast lookup; beyond that, each event maps its path to a label again.
MAX_CACHED_KEYS = 10_000
BREAKER_STATES = {"breaker_closed": 0.0, "breaker_half_open": 1.0, "breaker_opened": 2.0}


class RunMetrics:
    """Counts runs, steps, model and tool calls, cache lookups and pool events into `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None, *, max_label_values: int = 200) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._workflow = BoundedLabel(max_label_values)
        self._step = BoundedLabel(max_label_values)
        self._error = BoundedLabel(max_label_values)
        self._model = BoundedLabel(max_label_values)
        self._tool = BoundedLabel(max_label_values)
        self._pool = BoundedLabel(max_label_values)
        # Runs and steps are counted in plain Python and read at scrape time: they happen on every
        # step, and a prometheus-client child costs a lock per update.
        self._run_stats: dict[str, _RunStats] = {}
        self._run_stats_by_label: dict[str, _RunStats] = {}
        self._step_stats: dict[tuple[str, str], Distribution] = {}
        self._step_stats_by_label: dict[tuple[str, str], Distribution] = {}
        self._open: dict[str, int] = {}
        self._firings = [0, 0]  # started, ended
        self.runs_failed = Counter("nanobrain_runs_failed", "Runs that failed", ["workflow", "error"], registry=r)
        r.register(_EngineCollector(self))
        self.step_failures = Counter(
            "nanobrain_step_failures",
            "Failed attempts of step firings (attempts that were retried included)",
            ["workflow", "step", "error"],
            registry=r,
        )
        model_labels = ["provider", "model"]
        self.llm_calls = Counter("nanobrain_llm_calls", "Model calls", model_labels, registry=r)
        self.llm_errors = Counter(
            "nanobrain_llm_errors", "Model calls that failed", [*model_labels, "error"], registry=r
        )
        self.llm_latency = Histogram(
            "nanobrain_llm_call_duration_seconds", "Model call durations", model_labels, buckets=LLM_BUCKETS, registry=r
        )
        self.llm_first_token = Histogram(
            "nanobrain_llm_time_to_first_token_seconds",
            "Time from a model call to its first text",
            model_labels,
            buckets=LLM_BUCKETS,
            registry=r,
        )
        self.llm_tokens = Counter("nanobrain_llm_tokens", "Tokens used", [*model_labels, "kind"], registry=r)
        self.tool_calls = Counter("nanobrain_tool_calls", "Tool calls", ["tool", "outcome"], registry=r)
        self.tool_duration = Histogram(
            "nanobrain_tool_call_duration_seconds", "Tool call durations", ["tool"], buckets=STEP_BUCKETS, registry=r
        )
        self.cache_lookups = Counter("nanobrain_cache_lookups", "Cache lookups", ["level", "result"], registry=r)
        self.pool_events = Counter("nanobrain_pool_events", "Pool state changes", ["pool", "event"], registry=r)
        self.breaker_state = Gauge(
            "nanobrain_breaker_state",
            "Breaker state (0 closed, 1 half-open, 2 open)",
            ["pool", "processor"],
            registry=r,
        )
        self._pools = _PoolCollector()
        r.register(self._pools)
        self._handlers: dict[type, Callable[[Any], None]] = {
            StepStarted: self._step_started,
            StepFinished: self._step_finished,
            StepFailed: self._step_failed,
            RunStarted: self._run_started,
            RunFinished: self._run_finished,
            RunFailed: self._run_failed,
            Custom: self._custom,
        }
        self._custom_handlers: dict[str, Callable[[Custom], None]] = {
            "llm_call": self._llm_call,
            "tool_call": self._tool_call,
            "cache": self._cache,
        }
        for name in POOL_EVENTS:
            self._custom_handlers[name] = self._pool_event

    # -- the sink ----------------------------------------------------------------------------------
    def __call__(self, event: RunEvent) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def install(self) -> Callable[[], None]:
        """Count every run started from now on; returns a function that stops counting."""
        return instrument(self)

    def watch_pool(self, pool: ProcessorPool) -> None:
        """Report `pool`'s queue depth, requests in flight and processors at each scrape."""
        self._pools.add(pool)

    # -- runs and steps ---------------------------------------------------------------------------
    # Called on the run's event loop thread (events from worker threads are handed to it).
    def _runs_of(self, path: str) -> _RunStats:
        stats = self._run_stats.get(path)
        if stats is None:
            label = self._workflow(path)
            stats = self._run_stats_by_label.get(label)
            if stats is None:
                stats = self._run_stats_by_label[label] = _RunStats()
            if len(self._run_stats) < MAX_CACHED_KEYS:
                self._run_stats[path] = stats
        return stats

    def _run_started(self, event: RunStarted) -> None:
        self._runs_of(event.path).started += 1

    def _run_finished(self, event: RunFinished) -> None:
        stats = self._runs_of(event.path)
        stats.finished += 1
        stats.duration.observe(event.duration)
        self._close_firings(event.run_id)

    def _run_failed(self, event: RunFailed) -> None:
        stats = self._runs_of(event.path)
        stats.failed += 1
        stats.duration.observe(event.duration)
        self.runs_failed.labels(self._workflow(event.path), self._error(error_type(event.error))).inc()
        self._close_firings(event.run_id)

    def _close_firings(self, run_id: str) -> None:
        # Firings cancelled when a run fails report nothing: they end with their run.
        left = self._open.pop(run_id, 0)
        if left:
            self._firings[1] += left

    def _step_started(self, event: StepStarted) -> None:
        open_ = self._open
        run_id = event.run_id
        open_[run_id] = open_.get(run_id, 0) + 1
        self._firings[0] += 1

    def _step_finished(self, event: StepFinished) -> None:
        open_ = self._open
        run_id = event.run_id
        left = open_.get(run_id, 0)
        if left > 0:
            open_[run_id] = left - 1
            self._firings[1] += 1
        key = (event.path, event.step)
        stats = self._step_stats.get(key)
        if stats is None:
            stats = self._step_distribution(key)
        stats.observe(event.duration)

    def _step_distribution(self, key: tuple[str, str]) -> Distribution:
        label = (self._workflow(key[0]), self._step(key[1]))
        stats = self._step_stats_by_label.get(label)
        if stats is None:
            stats = self._step_stats_by_label[label] = Distribution(STEP_BUCKETS)
        if len(self._step_stats) < MAX_CACHED_KEYS:
            self._step_stats[key] = stats
        return stats

    def _step_failed(self, event: StepFailed) -> None:
        # A retried attempt and the final failure look alike here; the final one is followed by the
        # run's failure, which closes whatever firings remain open.
        self.step_failures.labels(
            self._workflow(event.path), self._step(event.step), self._error(error_type(event.error))
        ).inc()

    # -- custom events ----------------------------------------------------------------------------
    def _custom(self, event: Custom) -> None:
        handler = self._custom_handlers.get(event.name)
        if handler is not None:
            handler(event)

    def _llm_call(self, event: Custom) -> None:
        data = event.data
        provider, model = self._model(data.get("provider", "")), self._model(data.get("model", ""))
        self.llm_calls.labels(provider, model).inc()
        duration = data.get("duration")
        if duration is not None:
            self.llm_latency.labels(provider, model).observe(duration)
        error = data.get("error")
        if error:
            self.llm_errors.labels(provider, model, self._error(error)).inc()
            return
        first = data.get("time_to_first_token")
        if first is not None:
            self.llm_first_token.labels(provider, model).observe(first)
        for kind in ("prompt", "completion"):
            count = data.get(f"{kind}_tokens") or 0
            if count:
                self.llm_tokens.labels(provider, model, kind).inc(count)

    def _tool_call(self, event: Custom) -> None:
        data = event.data
        tool = self._tool(data.get("tool", ""))
        self.tool_calls.labels(tool, "error" if data.get("is_error") else "ok").inc()
        duration = data.get("duration")
        if duration is not None:
            self.tool_duration.labels(tool).observe(duration)

    def _cache(self, event: Custom) -> None:
        data = event.data
        for level in data.get("missed") or ():
            self.cache_lookups.labels(str(level), "miss").inc()
        if data.get("hit"):
            self.cache_lookups.labels(str(data.get("level")), "hit").inc()

    def _pool_event(self, event: Custom) -> None:
        data = event.data
        pool = self._pool(data.get("pool", ""))
        self.pool_events.labels(pool, event.name).inc()
        state = BREAKER_STATES.get(event.name)
        if state is not None:
            self.breaker_state.labels(pool, self._step(data.get("processor", ""))).set(state)


class _RunStats:
    __slots__ = ("duration", "failed", "finished", "started")

    def __init__(self) -> None:
        self.started = self.finished = self.failed = 0
        self.duration = Distribution(STEP_BUCKETS)


class _EngineCollector(Collector):
    """Runs and steps as Prometheus metrics, read from the plain counters when scraped."""

    def __init__(self, metrics: RunMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        metrics = self._metrics
        runs = sorted(metrics._run_stats_by_label.items())
        started = CounterMetricFamily("nanobrain_runs_started", "Runs started", labels=["workflow"])
        finished = CounterMetricFamily("nanobrain_runs_finished", "Runs that finished", labels=["workflow"])
        in_flight = GaugeMetricFamily("nanobrain_runs_in_flight", "Runs going on", labels=["workflow"])
        durations = HistogramMetricFamily("nanobrain_run_duration_seconds", "Run durations", labels=["workflow"])
        for workflow, stats in runs:
            started.add_metric([workflow], stats.started)
            finished.add_metric([workflow], stats.finished)
            in_flight.add_metric([workflow], stats.started - stats.finished - stats.failed)
            durations.add_metric([workflow], stats.duration.buckets(), stats.duration.sum)
        yield from (started, finished, in_flight, durations)
        steps = HistogramMetricFamily(
            "nanobrain_step_duration_seconds", "Durations of step firings that finished", labels=["workflow", "step"]
        )
        for (workflow, step), distribution in sorted(metrics._step_stats_by_label.items()):
            steps.add_metric([workflow, step], distribution.buckets(), distribution.sum)
        yield steps
        begun, ended = metrics._firings
        yield GaugeMetricFamily("nanobrain_step_firings_in_flight", "Step firings going on", value=begun - ended)


class _PoolCollector(Collector):
    """Live figures of watched pools, read when scraped (pools are held weakly)."""

    def __init__(self) -> None:
        self._pools: weakref.WeakSet[ProcessorPool] = weakref.WeakSet()

    def add(self, pool: ProcessorPool) -> None:
        self._pools.add(pool)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        figures = {
            "queued": GaugeMetricFamily("nanobrain_pool_queue_depth", "Requests waiting in the pool", labels=["pool"]),
            "in_flight": GaugeMetricFamily("nanobrain_pool_in_flight", "Requests running", labels=["pool"]),
            "size": GaugeMetricFamily("nanobrain_pool_processors", "Processors in service", labels=["pool"]),
            "serving": GaugeMetricFamily(
                "nanobrain_pool_processors_healthy",
                "Processors able to serve (healthy, breaker not open)",
                labels=["pool"],
            ),
        }
        for pool in list(self._pools):
            readiness = pool.readiness()
            for key, family in figures.items():
                family.add_metric([pool.name], float(readiness[key]))
        yield from figures.values()


_default: RunMetrics | None = None
_default_lock = threading.Lock()
_users = 0
_remove: Callable[[], None] | None = None


def shared_metrics() -> RunMetrics:
    """The process-wide `RunMetrics` (in prometheus-client's default registry, beside the process
    figures), created on first use; it counts runs only while enabled."""
    global _default
    with _default_lock:
        if _default is None:
            _default = RunMetrics(REGISTRY)
        return _default


def use_metrics() -> Callable[[], None]:
    """Count runs with the shared metrics until the returned function is called.

    Users are counted: the sink is installed once, however many servers use it, and removed when
    the last one stops (so a test's server does not leave every later run instrumented).
    """
    global _users, _remove
    metrics = shared_metrics()
    with _default_lock:
        _users += 1
        if _users == 1:
            _remove = metrics.install()
    released = False

    def release() -> None:
        global _users, _remove
        nonlocal released
        with _default_lock:
            if released:
                return
            released = True
            _users -= 1
            if _users == 0 and _remove is not None:
                _remove()
                _remove = None

    return release


def enable_metrics() -> RunMetrics:
    """Count every run from now on with the shared metrics, for the life of the process (the CLI)."""
    global _enabled
    if not _enabled:
        use_metrics()
        _enabled = True
    return shared_metrics()


_enabled = False


def metrics_app(registry: CollectorRegistry | None = None) -> Any:
    """An ASGI app answering with the registry's metrics in the Prometheus text format."""
    from prometheus_client import make_asgi_app

    return make_asgi_app(registry if registry is not None else shared_metrics().registry)


def start_metrics_server(
    port: int, *, host: str = "127.0.0.1", registry: CollectorRegistry | None = None
) -> tuple[Any, threading.Thread]:
    """Serve `/metrics` on `host:port` from a background thread; returns (server, thread).

    `port=0` picks a free port (`server.server_port` tells which).
    """
    from prometheus_client import start_http_server

    server, thread = start_http_server(
        port, addr=host, registry=registry if registry is not None else enable_metrics().registry
    )
    return server, thread


__all__ = [
    "LLM_BUCKETS",
    "STEP_BUCKETS",
    "RunMetrics",
    "enable_metrics",
    "metrics_app",
    "shared_metrics",
    "start_metrics_server",
    "use_metrics",
]
