"""Structured run logs: one JSON line per run end and per failure, with run id, step and trace id,
and no secrets."""

from __future__ import annotations

import io
import json
import logging

import pytest
from tests.observability.workloads import flaky_workflow

import nanobrain as nb
from nanobrain.observability.logs import JsonFormatter, RunLogSink, enable_run_logs


def lines(stream: io.StringIO) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_one_json_line_per_run_end_and_per_failure() -> None:
    stream = io.StringIO()  # not a terminal: JSON lines
    stop = enable_run_logs(stream)
    try:
        assert await flaky_workflow().run(x=1) == {"result": 2}

        @nb.step
        def leak(x: int) -> int:
            raise PermissionError(
                "POST https://ada:hunter2secret@api.example.com/v1 said 401 "
                "for Authorization: Bearer sk-live-abcdef123456"
            )

        with pytest.raises(nb.StepError):
            await nb.Workflow.sequence(leak, name="leaky").run(x=1)
    finally:
        stop()
    records = lines(stream)
    assert [(r["level"], r["workflow"]) for r in records] == [
        ("warning", "flaky"),
        ("info", "flaky"),
        ("warning", "leaky"),
        ("error", "leaky"),
    ]
    retried, finished, _, failed = records
    assert retried["step"] == "flaky" and retried["attempt"] == 1 and retried["error"].startswith("ConnectionError")
    assert finished["run_id"] == retried["run_id"] and finished["duration"] >= 0
    assert failed["error"].startswith("PermissionError: POST https://ada:***@api.example.com")
    assert "trace_id" not in failed  # tracing is off
    text = stream.getvalue()
    assert "hunter2secret" not in text and "sk-live-abcdef123456" not in text
    assert "Authorization: ***" in text


async def test_lines_carry_the_trace_id_when_tracing_is_on() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from nanobrain.observability.tracing import TracingSink

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing = TracingSink(provider)
    stream = io.StringIO()
    log = logging.getLogger("nanobrain.test.runs")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    # Tracing first: the run's span has ended when the log line is written, its trace id is kept.
    remove_tracing = tracing.install()
    remove_logs = RunLogSink(log, trace_ids=tracing.trace_id).install()
    try:
        await flaky_workflow().run(x=1)
    finally:
        remove_logs()
        remove_tracing()
        log.removeHandler(handler)
    (run_span,) = [s for s in memory.get_finished_spans() if s.name == "run flaky"]
    expected = f"{run_span.context.trace_id:032x}"
    assert {r["trace_id"] for r in lines(stream)} == {expected}


def test_a_terminal_gets_readable_lines() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    stop = enable_run_logs(stream)
    try:
        logging.getLogger("nanobrain.runs").info("run x finished", extra={"run_id": "abc", "workflow": "x"})
    finally:
        stop()
    assert stream.getvalue().strip() == "info nanobrain.runs: run x finished run_id=abc workflow=x"


def test_nanobrain_run_logs_json_lines_when_asked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    (tmp_path / "w.yaml").write_text(
        "name: shout\ninputs: {text: str}\noutputs: {result: str}\n"
        "steps:\n  upper: {function: nb_logs_helper:upper}\n"
        "links:\n  - {from: inputs.text, to: upper.text}\n  - {from: upper.result, to: outputs.result}\n"
    )
    (tmp_path / "nb_logs_helper.py").write_text("def upper(text: str) -> str:\n    return text.upper()\n")
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "NANOBRAIN_RUN_LOGS": "json",
    }
    command = [sys.executable, "-m", "nanobrain", "run", "w.yaml", "--json", "-i", "text=hi"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
    assert (line["level"], line["workflow"], line["message"][:16]) == ("info", "shout", "run shout finish")
    assert len(line["run_id"]) == 16
    bad = subprocess.run(
        command, cwd=tmp_path, env={**env, "NANOBRAIN_RUN_LOGS": "loud"}, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "NANOBRAIN_RUN_LOGS='loud'" in bad.stderr and "Traceback" not in bad.stderr
