"""Structured logs from the run event stream: one line per run end and per failure.

`RunLogSink` logs to `nanobrain.runs`: a run that finished (info), a run that failed with its
cause (error), a step attempt that failed (warning). Each record carries the run id, the
workflow path, the step and, when tracing is on, the trace id. Inputs and outputs are never
logged, and every message goes through `redact` (URL passwords, bearer tokens, API keys).

`JsonFormatter` writes one JSON object per line; `enable_run_logs()` uses it when the stream is
not a terminal, and a readable `key=value` line when it is.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from ..core.events import RunEvent, RunFailed, RunFinished, StepFailed
from ..core.sinks import instrument
from ..infrastructure.security.redaction import redact
from .labels import error_type

logger = logging.getLogger("nanobrain.runs")

#: Record attributes copied into structured output when a record has them.
FIELDS = ("run_id", "parent_run_id", "workflow", "step", "firing", "attempt", "trace_id", "duration", "error", "usage")
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the run fields it carries."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_") and value is not None:
                data[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            data["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(data, default=str, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    """`level logger: message key=value ...` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{name}={getattr(record, name)}" for name in FIELDS if getattr(record, name, None) is not None
        )
        line = f"{record.levelname.lower()} {record.name}: {redact(record.getMessage())}"
        return f"{line} {redact(extras)}" if extras else line


class RunLogSink:
    """Logs run ends and failures (an event sink)."""

    def __init__(self, log: logging.Logger | None = None, *, trace_ids: Callable[[str], str | None] | None = None):
        self.log = log or logger
        self._trace_ids = trace_ids

    def install(self) -> Callable[[], None]:
        return instrument(self)

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, RunFinished):
            self.log.info(
                "run %s finished in %.3fs",
                event.path,
                event.duration,
                extra=self._fields(event, duration=round(event.duration, 6), usage=event.usage or None),
            )
        elif isinstance(event, RunFailed):
            cause = _describe(event.error)
            self.log.error(
                "run %s failed: %s",
                event.path,
                cause,
                extra=self._fields(event, duration=round(event.duration, 6), error=cause),
            )
        elif isinstance(event, StepFailed):
            cause = _describe(event.error)
            self.log.warning(
                "step %s of %s failed (attempt %d): %s",
                event.step,
                event.path,
                event.attempt,
                cause,
                extra=self._fields(event, step=event.step, firing=event.firing, attempt=event.attempt, error=cause),
            )

    def _fields(self, event: RunEvent, **more: Any) -> dict[str, Any]:
        trace_id = self._trace_id(event.run_id)
        return {"run_id": event.run_id, "workflow": event.path, "trace_id": trace_id, **more}

    def _trace_id(self, run_id: str) -> str | None:
        if self._trace_ids is not None:
            return self._trace_ids(run_id)
        # Tracing is looked up when a line is written, so it may be enabled after the logs.
        tracing = sys.modules.get("nanobrain.observability.tracing")
        sink = tracing.active_tracing() if tracing is not None else None
        return sink.trace_id(run_id) if sink is not None else None


def _describe(error: BaseException | None) -> str:
    """`Type: message` of the root cause, secrets masked."""
    if error is None:
        return "unknown error"
    cause = error.__cause__ if error.__cause__ is not None else error
    return redact(f"{error_type(error)}: {cause}")


def enable_run_logs(
    stream: IO[str] | None = None, *, json_lines: bool | None = None, level: int = logging.INFO
) -> Callable[[], None]:
    """Log run ends and failures to `stream` (default stderr), as JSON lines unless it is a terminal.

    Returns a function that stops logging them.
    """
    stream = stream if stream is not None else sys.stderr
    if json_lines is None:
        json_lines = not (hasattr(stream, "isatty") and stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_lines else KeyValueFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    remove = RunLogSink(logger).install()

    def stop() -> None:
        remove()
        logger.removeHandler(handler)

    return stop


__all__ = ["FIELDS", "JsonFormatter", "KeyValueFormatter", "RunLogSink", "enable_run_logs"]
