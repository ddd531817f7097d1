"""OpenTelemetry traces from the run event stream: `TracingSink` turns events into spans.

A span per run, per step firing (a nested run is a child of the firing that runs it), per model
call (GenAI semantic conventions: `chat {model}` with model, tokens and finish reason) and per
tool call (`execute_tool {tool}`). Span times come from the events' own timestamps, so spans are
built after the fact and nothing wraps the step's code. Other step reports (pool and cache
events) become span events on their firing.

Off by default: `enable_tracing()` (or `tracing_from_env()`, which reads the standard `OTEL_*`
variables) installs the sink; without it runs pay nothing. Message contents, inputs, outputs and
tool arguments are recorded only when asked for (`capture_content=True`, or
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..optional import missing_extra, require

try:
    from opentelemetry import trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
except ModuleNotFoundError as exc:
    raise missing_extra(exc, extra="observability", purpose="tracing") from None

from .. import __version__
from ..core.context import current_context
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
from .labels import error_type
from .setup import tracing_requested

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

CAPTURE_CONTENT_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
CONTENT_LIMIT = 4096
RECENT_RUNS = 1024


class _RunSpans:
    """A run's span, the context its firings start in, and the spans of its firings going on."""

    __slots__ = ("context", "firings", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.context = trace.set_span_in_context(span)
        self.firings: dict[tuple[str, int], Span] = {}


OK = Status(StatusCode.OK)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class TracingSink:
    """Builds spans from run events with `tracer_provider` (default: the global one)."""

    def __init__(self, tracer_provider: Any = None, *, capture_content: bool | None = None) -> None:
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.provider = provider
        self.tracer = provider.get_tracer("nanobrain", __version__)
        self.capture_content = _capture_from_env() if capture_content is None else capture_content
        self._runs: dict[str, _RunSpans] = {}
        # Trace ids of runs that just ended: consumers called after this sink (logs) still find them.
        self._ended: dict[str, str] = {}
        self._handlers: dict[type, Callable[[Any], None]] = {
            StepStarted: self._step_started,
            StepFinished: self._step_finished,
            StepFailed: self._step_failed,
            RunStarted: self._run_started,
            RunFinished: self._run_finished,
            RunFailed: self._run_failed,
            Custom: self._custom,
        }

    def __call__(self, event: RunEvent) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def install(self) -> Callable[[], None]:
        """Trace every run started from now on; returns a function that stops tracing."""
        return instrument(self)

    # -- lookups for other consumers ----------------------------------------------------------------
    def span_of(self, run_id: str, step: str | None = None, firing: int = 0) -> Span | None:
        """The open span of a run, or of one firing of its step."""
        run = self._runs.get(run_id)
        if run is None:
            return None
        if step is None:
            return run.span
        return run.firings.get((step, firing)) or run.span

    def trace_id(self, run_id: str) -> str | None:
        """The hex trace id of a run going on or recently ended (for logs)."""
        run = self._runs.get(run_id)
        if run is None:
            return self._ended.get(run_id)
        return f"{run.span.get_span_context().trace_id:032x}"

    def current_span(self) -> Span | None:
        """The span of the step firing running now (to propagate its context on outgoing calls)."""
        context = current_context()
        if context is None:
            return None
        return self.span_of(context.run_id, context.step, context.firing)

    # -- runs ---------------------------------------------------------------------------------------
    def _run_started(self, event: RunStarted) -> None:
        parent: Span | None = None
        if event.parent_run_id is not None:
            # The firing that runs this nested workflow is the step context we are called in.
            context = current_context()
            if context is not None and context.run_id == event.parent_run_id:
                parent = self.span_of(context.run_id, context.step, context.firing)
            else:
                parent = self.span_of(event.parent_run_id)
        # A top-level run continues the caller's trace (an HTTP request's `traceparent`), if any.
        span_context = trace.set_span_in_context(parent) if parent is not None else None
        attributes: dict[str, Any] = {"nanobrain.run_id": event.run_id, "nanobrain.workflow": event.path}
        if event.parent_run_id is not None:
            attributes["nanobrain.parent_run_id"] = event.parent_run_id
        if self.capture_content:
            attributes["nanobrain.inputs"] = _content(event.inputs)
        span = self.tracer.start_span(
            f"run {event.path}", context=span_context, attributes=attributes, start_time=_ns(event.time)
        )
        self._runs[event.run_id] = _RunSpans(span)

    def _run_finished(self, event: RunFinished) -> None:
        span = self._end_run(event.run_id, event.time)
        if span is None:
            return
        for name, count in event.usage.items():
            span.set_attribute(f"nanobrain.usage.{name}", count)
        if self.capture_content:
            span.set_attribute("nanobrain.outputs", _content(event.outputs))
        span.end(_ns(event.time))

    def _run_failed(self, event: RunFailed) -> None:
        span = self._end_run(event.run_id, event.time, event.error)
        if span is None:
            return
        _failed(span, event.error)
        span.end(_ns(event.time))

    def _end_run(self, run_id: str, time: float, error: BaseException | None = None) -> Span | None:
        """Take the run's span; firings still open (cancelled by a failure) end with it."""
        run = self._runs.pop(run_id, None)
        if run is None:
            return None
        ended = self._ended
        ended[run_id] = f"{run.span.get_span_context().trace_id:032x}"
        if len(ended) > RECENT_RUNS:
            del ended[next(iter(ended))]
        for firing in run.firings.values():
            firing.set_status(Status(StatusCode.ERROR, "ended with its run"))
            firing.end(_ns(time))
        return run.span

    # -- step firings -------------------------------------------------------------------------------
    def _step_started(self, event: StepStarted) -> None:
        run = self._runs.get(event.run_id)
        if run is None:
            return
        # Few attributes: each one costs on every firing (the run id is on the run's span).
        attributes: dict[str, Any] = {"nanobrain.step": event.step, "nanobrain.firing": event.firing}
        if self.capture_content:
            attributes["nanobrain.inputs"] = _content(event.inputs)
        span = self.tracer.start_span(
            f"step {event.step}",
            context=run.context,
            attributes=attributes,
            start_time=_ns(event.time),
        )
        run.firings[(event.step, event.firing)] = span

    def _step_finished(self, event: StepFinished) -> None:
        run = self._runs.get(event.run_id)
        span = run.firings.pop((event.step, event.firing), None) if run is not None else None
        if span is None:
            return
        if self.capture_content:
            span.set_attribute("nanobrain.outputs", _content(event.outputs))
        if span.status.status_code is StatusCode.ERROR:  # type: ignore[attr-defined]
            span.set_status(OK)  # a retried attempt failed, then the firing finished
        # Success otherwise stays UNSET, as OpenTelemetry asks of instrumentation (and saves a lock).
        span.end(_ns(event.time))

    def _step_failed(self, event: StepFailed) -> None:
        # A retried attempt and the final failure look alike: record the error on the firing; the
        # span ends when the firing finishes after all, or when its run fails.
        run = self._runs.get(event.run_id)
        span = run.firings.get((event.step, event.firing)) if run is not None else None
        if span is None:
            return
        error = event.error.__cause__ if event.error is not None and event.error.__cause__ else event.error
        if error is not None:
            span.record_exception(error, attributes={"nanobrain.attempt": event.attempt}, timestamp=_ns(event.time))
        span.set_status(Status(StatusCode.ERROR, error_type(event.error)))

    # -- model calls, tool calls and other reports ----------------------------------------------------
    def _custom(self, event: Custom) -> None:
        name = event.name
        if name == "llm_call":
            self._llm_call(event)
        elif name == "tool_call":
            self._tool_call(event)
        else:
            parent = self.span_of(event.run_id, event.step, event.firing)
            if parent is not None:
                parent.add_event(name, _scalars(event.data), timestamp=_ns(event.time))

    def _child(self, event: Custom, name: str, kind: SpanKind, attributes: dict[str, Any]) -> Span:
        parent = self.span_of(event.run_id, event.step, event.firing)
        duration = event.data.get("duration") or 0.0
        return self.tracer.start_span(
            name,
            context=trace.set_span_in_context(parent) if parent is not None else None,
            kind=kind,
            attributes=attributes,
            start_time=_ns(event.time - duration),
        )

    def _llm_call(self, event: Custom) -> None:
        data = event.data
        model = str(data.get("model", ""))
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": str(data.get("provider", "")),
            "gen_ai.request.model": model,
        }
        error = data.get("error")
        if not error:
            attributes["gen_ai.response.model"] = model
            attributes["gen_ai.usage.input_tokens"] = int(data.get("prompt_tokens") or 0)
            attributes["gen_ai.usage.output_tokens"] = int(data.get("completion_tokens") or 0)
            if data.get("finish_reason"):
                attributes["gen_ai.response.finish_reasons"] = [str(data["finish_reason"])]
            if data.get("time_to_first_token") is not None:
                attributes["nanobrain.time_to_first_token"] = float(data["time_to_first_token"])
        span = self._child(event, f"chat {model}", SpanKind.CLIENT, attributes)
        if error:
            span.set_attribute("error.type", str(error))
            span.set_status(Status(StatusCode.ERROR, str(error)))
        span.end(_ns(event.time))

    def _tool_call(self, event: Custom) -> None:
        data = event.data
        tool = str(data.get("tool", ""))
        attributes: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool}
        if data.get("call_id"):
            attributes["gen_ai.tool.call.id"] = str(data["call_id"])
        if self.capture_content and "arguments" in data:
            attributes["gen_ai.tool.call.arguments"] = _content(data["arguments"])
        span = self._child(event, f"execute_tool {tool}", SpanKind.INTERNAL, attributes)
        if data.get("is_error"):
            span.set_attribute("error.type", "tool_error")
            span.set_status(Status(StatusCode.ERROR, "the tool reported an error"))
        span.end(_ns(event.time))


def _failed(span: Span, error: BaseException | None) -> None:
    if error is not None:
        span.record_exception(error)
        span.set_attribute("error.type", error_type(error))
    span.set_status(Status(StatusCode.ERROR, error_type(error)))


def _content(value: Any) -> str:
    """Recorded content: JSON when it can be, cut at `CONTENT_LIMIT` characters."""
    try:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= CONTENT_LIMIT else text[:CONTENT_LIMIT] + "…"


def _scalars(data: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a report that are valid span attributes (scalars)."""
    return {k: v for k, v in data.items() if isinstance(v, str | bool | int | float)}


def _capture_from_env() -> bool:
    return os.environ.get(CAPTURE_CONTENT_VARIABLE, "").strip().lower() in {"1", "true", "yes"}


# -- configuration -----------------------------------------------------------------------------------
class TracingConfigError(ValueError):
    """An `OTEL_*` variable asks for something this process cannot do."""


def tracer_provider_from_env(environ: Mapping[str, str] | None = None) -> TracerProvider:
    """A tracer provider exporting as `OTEL_TRACES_EXPORTER` says (`otlp` over HTTP, or `console`).

    The exporter reads its endpoint, headers and timeout from the standard variables; the
    resource comes from `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` (service name `nanobrain`
    when neither names one).
    """
    require("opentelemetry.sdk.trace", extra="observability", purpose="tracing")
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    env = os.environ if environ is None else environ
    exporters: list[SpanExporter] = []
    for name in [n.strip().lower() for n in (env.get("OTEL_TRACES_EXPORTER") or "otlp").split(",") if n.strip()]:
        if name == "otlp":
            protocol = (
                env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
            ).strip()
            if protocol not in ("", "http/protobuf"):
                raise TracingConfigError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: NanoBrain exports OTLP over HTTP "
                    "(set it to 'http/protobuf' or unset it)"
                )
            otlp = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
            exporters.append(require(otlp, extra="observability", purpose="OTLP trace export").OTLPSpanExporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name != "none":
            raise TracingConfigError(
                f"OTEL_TRACES_EXPORTER={name!r} is not supported (expected 'otlp', 'console' or 'none')"
            )
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "nanobrain"}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


_default: TracingSink | None = None
_remove: Callable[[], None] | None = None
_default_lock = threading.Lock()


def enable_tracing(tracer_provider: Any = None, *, capture_content: bool | None = None) -> TracingSink:
    """The process-wide `TracingSink`, installed on first call (later calls return it).

    Without a `tracer_provider`, one is built from the `OTEL_*` variables.
    """
    global _default, _remove
    with _default_lock:
        if _default is None:
            provider = tracer_provider if tracer_provider is not None else tracer_provider_from_env()
            _default = TracingSink(provider, capture_content=capture_content)
            _remove = _default.install()
        return _default


def disable_tracing() -> None:
    """Stop the process-wide tracing: flush what it holds and remove its sink."""
    global _default, _remove
    with _default_lock:
        sink, remove = _default, _remove
        _default = _remove = None
    if remove is not None:
        remove()
    if sink is not None and hasattr(sink.provider, "shutdown"):
        sink.provider.shutdown()


def tracing_from_env() -> TracingSink | None:
    """Enable tracing if the `OTEL_*` variables ask for it (what `nanobrain run` and `serve` call)."""
    if not tracing_requested():
        return None
    return enable_tracing()


def active_tracing() -> TracingSink | None:
    """The process-wide sink, if tracing is enabled."""
    return _default


__all__ = [
    "CAPTURE_CONTENT_VARIABLE",
    "TracingConfigError",
    "TracingSink",
    "active_tracing",
    "disable_tracing",
    "enable_tracing",
    "tracer_provider_from_env",
    "tracing_from_env",
]
