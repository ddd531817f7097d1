"""Observability as consumers of the run event stream: metrics, traces, logs, health and alerts.

Each part is an event sink (or reads one) and imports its dependencies only when used: install
the `observability` extra for prometheus-client and OpenTelemetry. Nothing is collected until
you enable it (`enable_metrics()`, `enable_tracing()`, `enable_run_logs()`): with no sink
registered, runs pay nothing.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "RunMetrics": "metrics",
    "enable_metrics": "metrics",
    "metrics_app": "metrics",
    "start_metrics_server": "metrics",
    "TracingSink": "tracing",
    "enable_tracing": "tracing",
    "tracing_from_env": "tracing",
    "RunLogSink": "logs",
    "JsonFormatter": "logs",
    "enable_run_logs": "logs",
    "HealthMonitor": "health",
    "HealthReport": "health",
    "AlertManager": "alerts",
    "AlertRule": "alerts",
    "load_alert_rules": "alerts",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nanobrain.observability' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)


__all__ = sorted(_EXPORTS)
