"""Metrics and traces: both are event sinks reading the run's event stream.

`nanobrain serve` and `nanobrain run --metrics-port` wire them for you (and `OTEL_*` variables
choose where traces go). Here they are attached to one run, in Python, and read back:
Prometheus text from the metrics registry, finished spans from an in-memory exporter.
"""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest

from nanobrain.observability import RunMetrics, TracingSink

from .first_workflow import build


async def observe() -> dict[str, Any]:
    metrics = RunMetrics()  # its own registry; `enable_metrics()` uses the process-wide one
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing = TracingSink(provider)

    result = await build().run(text="observe me", sinks=[metrics, tracing])

    return {
        "result": result,
        "metrics": generate_latest(metrics.registry).decode(),
        "spans": [span.name for span in spans.get_finished_spans()],
    }


if __name__ == "__main__":
    print(asyncio.run(observe())["spans"])
