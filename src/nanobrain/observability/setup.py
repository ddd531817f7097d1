"""Turning observability on for a process from its options and the standard environment variables.

Kept free of heavy imports: the CLI calls it on every run, and it loads prometheus-client or
OpenTelemetry only when they are asked for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..core.errors import NanoBrainError


class ObservabilityError(NanoBrainError):
    """Metrics or tracing cannot start: the extra is missing, the port is taken, a bad setting."""


def tracing_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the `OTEL_*` variables ask for traces (an endpoint or an exporter, SDK not disabled)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


RUN_LOGS_VARIABLE = "NANOBRAIN_RUN_LOGS"
_logs_enabled = False


def run_logs_requested(environ: Mapping[str, str] | None = None) -> bool | None:
    """What `NANOBRAIN_RUN_LOGS` asks for: None (off), True (JSON lines), False (text lines).

    `json` or `text`; `1`/`on`/`auto` choose JSON unless stderr is a terminal.
    """
    env = os.environ if environ is None else environ
    value = env.get(RUN_LOGS_VARIABLE, "").strip().lower()
    if value in ("", "0", "off", "no", "false"):
        return None
    if value == "json":
        return True
    if value == "text":
        return False
    if value in ("1", "on", "yes", "true", "auto"):
        import sys

        return not sys.stderr.isatty()
    raise ObservabilityError(f"{RUN_LOGS_VARIABLE}={value!r}: expected json, text, auto or off")


def observe_process(*, metrics_port: int | None = None, metrics_host: str = "127.0.0.1") -> dict[str, Any]:
    """Serve metrics on `metrics_port` (if given), log runs when `NANOBRAIN_RUN_LOGS` says so, and
    trace when the `OTEL_*` variables say so.

    Returns what was started (`metrics_server`, `tracing`). A port that cannot be bound, a bad
    `OTEL_*` setting or a missing extra is an `ObservabilityError` saying which.
    """
    started: dict[str, Any] = {}
    if metrics_port is not None:
        if not 0 <= metrics_port <= 65535:
            raise ObservabilityError(f"--metrics-port must be between 0 and 65535, got {metrics_port}")
        metrics = _import("metrics")
        try:
            server, _thread = metrics.start_metrics_server(metrics_port, host=metrics_host)
        except OSError as exc:
            raise ObservabilityError(
                f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc.strerror or exc}"
            ) from None
        started["metrics_server"] = server
    logs = run_logs_requested()
    if logs is not None:
        global _logs_enabled
        if not _logs_enabled:
            from .logs import enable_run_logs

            enable_run_logs(json_lines=logs)
            _logs_enabled = True
        started["run_logs"] = True
    if tracing_requested():
        tracing = _import("tracing")
        try:
            started["tracing"] = tracing.enable_tracing()
        except tracing.TracingConfigError as exc:
            raise ObservabilityError(str(exc)) from None
    return started


def _import(module: str) -> Any:
    from importlib import import_module

    try:
        return import_module(f"nanobrain.observability.{module}")
    except ImportError as exc:
        raise ObservabilityError(
            f"{module} needs the observability extra ({exc.name} is missing): pip install 'nanobrain[observability]'"
        ) from None


__all__ = ["RUN_LOGS_VARIABLE", "ObservabilityError", "run_logs_requested", "observe_process", "tracing_requested"]
