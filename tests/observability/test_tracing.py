"""Traces from real runs: the span tree with the SDK's in-memory exporter, and OTLP over HTTP to a
small receiver on 127.0.0.1 that decodes the protobuf."""

from __future__ import annotations

import asyncio
import gzip
import http.server
import threading
from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from tests.observability.workloads import failing_workflow, flaky_workflow, nested_agent_workflow

import nanobrain as nb
from nanobrain.observability.tracing import (
    TracingConfigError,
    TracingSink,
    tracer_provider_from_env,
    tracing_requested,
)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    remove = TracingSink(provider).install()
    yield memory
    remove()
    provider.shutdown()


def tree(spans: tuple[ReadableSpan, ...]) -> list[str]:
    """The spans as indented names, children in start order."""
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    ids = {s.context.span_id for s in spans}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None and span.parent.span_id in ids else None
        by_parent.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(by_parent.get(parent, []), key=lambda s: s.start_time or 0):
            lines.append("  " * depth + span.name)
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return lines


async def test_span_tree_of_a_nested_workflow_with_an_agent_and_a_tool(exporter: InMemorySpanExporter) -> None:
    assert await nested_agent_workflow(model_name="tiny").run(city="Oslo") == {"result": "IT IS SUNNY."}
    spans = exporter.get_finished_spans()
    assert tree(spans) == [
        "run outer",
        "  step prepare",
        "  step inner",
        "    run outer/inner",
        "      step weather",
        "        chat tiny",
        "        execute_tool lookup",
        "        chat tiny",
        "  step polish",
    ]
    assert len({s.context.trace_id for s in spans}) == 1
    chat = [s for s in spans if s.name == "chat tiny"]
    first, answer = chat
    assert first.kind is SpanKind.CLIENT
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.provider.name"] == "scripted"
    assert first.attributes["gen_ai.request.model"] == "tiny"
    assert first.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert answer.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert answer.attributes["gen_ai.usage.output_tokens"] > 0
    assert answer.attributes["gen_ai.usage.input_tokens"] > 0
    tool = next(s for s in spans if s.name == "execute_tool lookup")
    assert tool.attributes["gen_ai.tool.name"] == "lookup"
    assert tool.attributes["gen_ai.tool.call.id"]
    # Children lie within their parents.
    by_id = {s.context.span_id: s for s in spans}
    for span in spans:
        if span.parent is not None:
            parent = by_id[span.parent.span_id]
            assert parent.start_time <= span.start_time <= span.end_time <= parent.end_time, span.name
    # Contents are not recorded unless asked for.
    recorded = " ".join(str(v) for s in spans for v in (s.attributes or {}).values())
    assert "Oslo" not in recorded and "sunny" not in recorded.lower()
    run = next(s for s in spans if s.name == "run outer")
    assert run.attributes["nanobrain.usage.completion_tokens"] > 0
    assert run.status.status_code is StatusCode.UNSET  # success is left unset, as OpenTelemetry asks


async def test_contents_are_recorded_when_opted_in() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    remove = TracingSink(provider, capture_content=True).install()
    try:
        await nested_agent_workflow().run(city="Oslo")
    finally:
        remove()
    spans = memory.get_finished_spans()
    tool = next(s for s in spans if s.name == "execute_tool lookup")
    assert "Oslo" in tool.attributes["gen_ai.tool.call.arguments"]
    assert "IT IS SUNNY." in next(s for s in spans if s.name == "run outer").attributes["nanobrain.outputs"]


async def test_failures_and_retries_mark_spans(exporter: InMemorySpanExporter) -> None:
    with pytest.raises(nb.StepError):
        await failing_workflow().run(x=1)
    assert await flaky_workflow().run(x=1) == {"result": 2}
    spans = {s.name: s for s in exporter.get_finished_spans()}
    failed = spans["step explode"]
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.attributes["exception.type"] for e in failed.events] == ["ValueError"]
    assert spans["run failing"].status.status_code is StatusCode.ERROR
    assert spans["run failing"].attributes["error.type"] == "ValueError"
    # The retried attempt's error stays as an event; the firing finished, so it is OK.
    flaky = spans["step flaky"]
    assert flaky.status.status_code is StatusCode.OK
    assert [e.attributes["exception.type"] for e in flaky.events] == ["ConnectionError"]


async def test_concurrent_runs_get_separate_traces(exporter: InMemorySpanExporter) -> None:
    workflow = nested_agent_workflow()
    await asyncio.gather(*(workflow.run(city=c) for c in ("a", "b", "c")))
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.name == "run outer"]
    assert len({s.context.trace_id for s in roots}) == 3
    for root in roots:
        assert len([s for s in spans if s.context.trace_id == root.context.trace_id]) == 9


def test_tracing_is_off_unless_the_otel_variables_ask_for_it() -> None:
    assert not tracing_requested({})
    assert tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing_requested({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing_requested({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    assert not tracing_requested({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    with pytest.raises(TracingConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL='grpc'"):
        tracer_provider_from_env({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(TracingConfigError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        tracer_provider_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})


class _Receiver(http.server.BaseHTTPRequestHandler):
    requests: list[tuple[str, ExportTraceServiceRequest]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        self.requests.append((self.path, message))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


async def test_spans_reach_an_otlp_http_receiver(monkeypatch: pytest.MonkeyPatch) -> None:
    _Receiver.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "otlp-test")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    provider = tracer_provider_from_env()
    remove = TracingSink(provider).install()
    try:
        await nested_agent_workflow(model_name="tiny").run(city="Oslo")
        assert await asyncio.to_thread(provider.force_flush, 10_000)
    finally:
        remove()
        provider.shutdown()
        server.shutdown()
        server.server_close()
    assert {path for path, _ in _Receiver.requests} == {"/v1/traces"}
    spans = []
    services = set()
    for _, message in _Receiver.requests:
        for resource_spans in message.resource_spans:
            services |= {a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"}
            for scope in resource_spans.scope_spans:
                spans.extend(scope.spans)
    assert services == {"otlp-test"}
    by_id = {s.span_id: s for s in spans}
    names = sorted(s.name for s in spans)
    assert names == sorted(
        [
            "run outer",
            "step prepare",
            "step inner",
            "run outer/inner",
            "step weather",
            "chat tiny",
            "chat tiny",
            "execute_tool lookup",
            "step polish",
        ]
    )
    chat = next(s for s in spans if s.name == "chat tiny")
    chain = []
    span = chat
    while span.parent_span_id:
        span = by_id[span.parent_span_id]
        chain.append(span.name)
    assert chain == ["step weather", "run outer/inner", "step inner", "run outer"]
    attributes = {a.key: a.value for a in chat.attributes}
    assert attributes["gen_ai.request.model"].string_value == "tiny"
    assert attributes["gen_ai.usage.input_tokens"].int_value > 0


async def test_a_step_can_pass_its_trace_context_to_a_call_it_makes() -> None:
    from nanobrain.observability.http import inject_trace_context
    from nanobrain.observability.tracing import disable_tracing, enable_tracing

    assert inject_trace_context({}) == {}  # tracing off: nothing to add
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    enable_tracing(provider)
    try:

        @nb.step
        def call_out(x: int) -> str:
            return inject_trace_context({})["traceparent"]

        result = await nb.Workflow.sequence(call_out, name="caller").run(x=1)
    finally:
        disable_tracing()
    step = next(s for s in memory.get_finished_spans() if s.name == "step call_out")
    version, trace_id, span_id, flags = result["result"].split("-")
    assert (version, trace_id, span_id) == ("00", f"{step.context.trace_id:032x}", f"{step.context.span_id:016x}")
    assert int(flags, 16) & 1  # sampled
