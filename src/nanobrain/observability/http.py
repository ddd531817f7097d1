"""Observability for the HTTP server: `/metrics`, request metrics, and trace context from callers.

`instrument_app(app)` is what the server's app factory calls. It serves `/metrics` on a
protected router (auth applies to it as to every route but the probes), counts requests by
route template and status, and, when tracing is on, continues the caller's trace: a request
carrying a W3C `traceparent` header runs its workflows inside that trace.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .labels import BoundedLabel

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI
    from prometheus_client import CollectorRegistry

    from .alerts import AlertManager
    from .health import HealthMonitor

log = logging.getLogger("nanobrain.http")

Scope = dict[str, Any]
ASGIApp = Any


def metrics_router(registry: CollectorRegistry | None = None) -> APIRouter:
    """`GET /metrics` in the Prometheus text format; needs the `read` role."""
    from fastapi import Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from ..interfaces.http.auth import needs, protected_router
    from .metrics import shared_metrics

    source = registry if registry is not None else shared_metrics().registry
    router = protected_router("operations")

    @router.get(
        "/metrics",
        summary="Prometheus metrics: runs, steps, model calls, tools, pools, HTTP requests",
        response_class=Response,
        response_model=None,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "The metrics"}},
        **needs("read"),
    )
    async def metrics() -> Any:  # `Any`: FastAPI reads annotations, and Response is imported here only
        return Response(generate_latest(source), media_type=CONTENT_TYPE_LATEST)

    return router


class HttpMetricsMiddleware:
    """Counts requests by method, route template (never the raw path) and status, and times them."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Histogram

        from .metrics import STEP_BUCKETS

        self.app = app
        self._route = BoundedLabel(500)
        self.requests = _reuse(
            registry,
            "nanobrain_http_requests",
            lambda: Counter(
                "nanobrain_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry
            ),
        )
        self.duration = _reuse(
            registry,
            "nanobrain_http_request_duration_seconds",
            lambda: Histogram(
                "nanobrain_http_request_duration_seconds",
                "HTTP request durations (streams: until the last byte)",
                ["method", "route"],
                buckets=STEP_BUCKETS,
                registry=registry,
            ),
        )

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before answering

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = self._route(getattr(route, "path", None) or "unmatched")
            method = scope.get("method", "")
            self.requests.labels(method, template, str(status)).inc()
            self.duration.labels(method, template).observe(time.perf_counter() - started)


def _reuse(registry: Any, name: str, make: Any) -> Any:
    """The collector already registered under `name` (several apps in one process), or a new one."""
    existing = getattr(registry, "_names_to_collectors", {}).get(name)
    return existing if existing is not None else make()


class TraceContextMiddleware:
    """Attaches the caller's W3C trace context (`traceparent`) for the request's duration."""

    def __init__(self, app: ASGIApp) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.app = app
        self._propagator = TraceContextTextMapPropagator()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in scope.get("headers", ())
            if key in (b"traceparent", b"tracestate")
        }
        if "traceparent" not in carrier:
            await self.app(scope, receive, send)
            return
        from opentelemetry import context

        token = context.attach(self._propagator.extract(carrier))
        try:
            await self.app(scope, receive, send)
        finally:
            context.detach(token)


def inject_trace_context(headers: dict[str, str]) -> dict[str, str]:
    """Add `traceparent` for the step firing running now (to call another NanoBrain process)."""
    from .tracing import active_tracing

    sink = active_tracing()
    span = sink.current_span() if sink is not None else None
    if span is None:
        return headers
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    TraceContextTextMapPropagator().inject(headers, context=trace.set_span_in_context(span))
    return headers


def pools_of(workflows: Iterable[Any]) -> list[Any]:
    """The processor pools of the parallel steps in `workflows` (nested workflows included), once each."""
    from ..core.workflow import Workflow

    pools: dict[int, Any] = {}
    for workflow in workflows:
        if isinstance(workflow, Workflow):
            for step in workflow.walk():
                pool = getattr(step, "pool", None)
                if pool is not None and hasattr(pool, "readiness"):
                    pools.setdefault(id(pool), pool)
    return list(pools.values())


def server_health(workflows: Iterable[Any]) -> HealthMonitor:
    """A health monitor with a check of each processor pool in the served workflows."""
    from .health import HealthMonitor, pool_check

    monitor = HealthMonitor()
    for pool in pools_of(workflows):
        monitor.add(f"pool {pool.name}", pool_check(pool))
    return monitor


ALERTS_VARIABLE = "NANOBRAIN_ALERTS"
ALERTS_EVERY_VARIABLE = "NANOBRAIN_ALERTS_EVERY"


def alerts_from_env() -> AlertManager | None:
    """An `AlertManager` for the rules in the file `NANOBRAIN_ALERTS` names (a bad file is a `ConfigError`)."""
    path = os.environ.get(ALERTS_VARIABLE)
    if not path:
        return None
    from .alerts import AlertManager, load_alert_rules

    rules, webhook = load_alert_rules(path)
    return AlertManager(rules, webhook=webhook)


def instrument_app(
    app: FastAPI, *, check_router: Callable[[APIRouter], None] | None = None, workflows: Iterable[Any] = ()
) -> Callable[[], Any]:
    """Serve `/metrics`, count requests, and continue callers' traces when tracing is on.

    Returns `start()`, for the app's lifespan: it starts counting runs (and tracing, when the
    `OTEL_*` variables ask for it) and returns the function that stops counting. `check_router`
    is the app's check that every route is protected; the pools of `workflows` report their
    queue depth, requests in flight and healthy processors. Without the `observability` extra the
    server runs without these (and says so once).
    """
    try:
        from .metrics import shared_metrics, use_metrics
    except ImportError as exc:
        log.info("no /metrics: the observability extra is not installed (%s is missing)", exc.name)
        return lambda: lambda: None
    from .setup import observe_process, tracing_requested

    metrics = shared_metrics()
    for pool in pools_of(workflows):
        metrics.watch_pool(pool)
    registry = metrics.registry
    router = metrics_router(registry)
    if check_router is not None:
        check_router(router)
    app.include_router(router)
    app.add_middleware(HttpMetricsMiddleware, registry=registry)
    if tracing_requested():
        app.add_middleware(TraceContextMiddleware)
    alerts = alerts_from_env()

    def start() -> Callable[[], None]:
        observe_process()  # run logs and tracing, when the environment asks for them
        stop_metrics = use_metrics()
        if alerts is None:
            return stop_metrics
        stop_alerts = alerts.install()
        evaluating = asyncio.ensure_future(alerts.run(every=float(os.environ.get(ALERTS_EVERY_VARIABLE) or 15)))

        def stop() -> None:
            evaluating.cancel()
            stop_alerts()
            stop_metrics()

        return stop

    return start


__all__ = [
    "ALERTS_EVERY_VARIABLE",
    "ALERTS_VARIABLE",
    "HttpMetricsMiddleware",
    "alerts_from_env",
    "TraceContextMiddleware",
    "inject_trace_context",
    "instrument_app",
    "metrics_router",
    "pools_of",
    "server_health",
]
