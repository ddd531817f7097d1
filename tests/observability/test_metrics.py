"""Metrics from real runs, scraped over HTTP from a real prometheus-client server and parsed with
prometheus-client's own parser."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from tests.observability.workloads import failing_workflow, flaky_workflow, nested_agent_workflow, parallel_workflow

import nanobrain as nb
from nanobrain.infrastructure.parallel import ProcessorPool
from nanobrain.observability.labels import OTHER, BoundedLabel
from nanobrain.observability.metrics import RunMetrics, start_metrics_server
from nanobrain.testing import SimulatedProcessor


@pytest.fixture
def metrics() -> Iterator[RunMetrics]:
    collected = RunMetrics(CollectorRegistry())
    remove = collected.install()
    yield collected
    remove()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample at `url`, by name and sorted labels."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return parse(response.read().decode())


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)  # type: ignore[no-any-return]


async def test_counters_after_known_runs_scraped_from_a_served_registry(metrics: RunMetrics) -> None:
    outer = nested_agent_workflow(model_name="tiny")
    for city in ("Oslo", "Bergen"):
        assert await outer.run(city=city) == {"result": "IT IS SUNNY."}
    with pytest.raises(nb.StepError):
        await failing_workflow().run(x=1)
    assert await flaky_workflow().run(x=1) == {"result": 2}
    assert (await parallel_workflow().run(request="r"))["response"]["processor"] == "p1"

    server, _thread = start_metrics_server(0, registry=metrics.registry)
    try:
        samples = await asyncio.to_thread(scrape, f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()

    # Runs by workflow: nested runs count under their path, failures under the root cause's type.
    assert value(samples, "nanobrain_runs_started_total", workflow="outer") == 2
    assert value(samples, "nanobrain_runs_finished_total", workflow="outer") == 2
    assert value(samples, "nanobrain_runs_finished_total", workflow="outer/inner") == 2
    assert value(samples, "nanobrain_runs_failed_total", workflow="failing", error="ValueError") == 1
    assert value(samples, "nanobrain_run_duration_seconds_count", workflow="failing") == 1
    for workflow in ("outer", "outer/inner", "failing", "flaky", "parallel"):
        assert value(samples, "nanobrain_runs_in_flight", workflow=workflow) == 0
    assert value(samples, "nanobrain_step_firings_in_flight") == 0
    # Step durations by workflow and step.
    assert value(samples, "nanobrain_step_duration_seconds_count", workflow="outer", step="prepare") == 2
    assert value(samples, "nanobrain_step_duration_seconds_count", workflow="outer/inner", step="weather") == 2
    assert value(samples, "nanobrain_step_duration_seconds_bucket", workflow="outer", step="polish", le="+Inf") == 2
    # A retried attempt is a failure of the step; the firing still finished once.
    assert value(samples, "nanobrain_step_failures_total", workflow="flaky", step="flaky", error="ConnectionError") == 1
    assert value(samples, "nanobrain_step_duration_seconds_count", workflow="flaky", step="flaky") == 1
    assert value(samples, "nanobrain_step_failures_total", workflow="failing", step="explode", error="ValueError") == 1
    # Model calls, latency, time to first token and tokens by provider and model.
    model = {"provider": "scripted", "model": "tiny"}
    assert value(samples, "nanobrain_llm_calls_total", **model) == 4
    assert value(samples, "nanobrain_llm_call_duration_seconds_count", **model) == 4
    assert value(samples, "nanobrain_llm_time_to_first_token_seconds_count", **model) == 2  # answers, not tool calls
    assert value(samples, "nanobrain_llm_tokens_total", kind="completion", **model) > 0
    assert value(samples, "nanobrain_llm_tokens_total", kind="prompt", **model) > 0
    assert value(samples, "nanobrain_tool_calls_total", tool="lookup", outcome="ok") == 2
    assert value(samples, "nanobrain_tool_call_duration_seconds_count", tool="lookup") == 2
    # The parallel step's failing processor: its breaker opened and the request moved on.
    assert value(samples, "nanobrain_pool_events_total", pool="fan", event="breaker_opened") == 1
    assert value(samples, "nanobrain_pool_events_total", pool="fan", event="request_retried") == 1
    assert value(samples, "nanobrain_breaker_state", pool="fan", processor="p0") == 2
    # No run id or user text became a label.
    labels = {v for (_, pairs) in samples for (_, v) in pairs}
    assert not {"Oslo", "Bergen", "r"} & labels


async def test_model_errors_are_counted_by_type(metrics: RunMetrics) -> None:
    from nanobrain.agents.agent import Agent
    from nanobrain.llm import ScriptedModel, ServerError

    agent = Agent("a", model=ScriptedModel([ServerError("overloaded", provider="scripted")], model="tiny"))
    with pytest.raises(nb.StepError):
        await nb.Workflow.sequence(agent, name="w").run(message="hi")
    samples = _local(metrics)
    model = {"provider": "scripted", "model": "tiny"}
    assert value(samples, "nanobrain_llm_calls_total", **model) == 1
    assert value(samples, "nanobrain_llm_errors_total", error="ServerError", **model) == 1
    assert value(samples, "nanobrain_llm_tokens_total", kind="prompt", **model) == 0


async def test_watched_pools_report_live_figures(metrics: RunMetrics) -> None:
    pool = ProcessorPool([SimulatedProcessor("p0"), SimulatedProcessor("p1")], name="workers")
    metrics.watch_pool(pool)
    pool.set_healthy("p1", False)
    samples = _local(metrics)
    assert value(samples, "nanobrain_pool_processors", pool="workers") == 2
    assert value(samples, "nanobrain_pool_processors_healthy", pool="workers") == 1
    assert value(samples, "nanobrain_pool_queue_depth", pool="workers") == 0
    await pool.aclose()


async def test_label_values_are_bounded(metrics: RunMetrics) -> None:
    metrics._workflow.limit = 3
    for index in range(6):
        await nb.Workflow.sequence(lambda x: x, name=f"dynamic{index}").run(x=1)
    samples = _local(metrics)
    started = {dict(pairs)["workflow"] for (name, pairs) in samples if name == "nanobrain_runs_started_total"}
    assert started == {"dynamic0", "dynamic1", "dynamic2", OTHER}
    assert value(samples, "nanobrain_runs_started_total", workflow=OTHER) == 3
    with pytest.raises(ValueError, match="at least one value"):
        BoundedLabel(0)


async def test_a_metrics_sink_that_raises_does_not_fail_runs(metrics: RunMetrics) -> None:
    def broken(event: nb.RunEvent) -> None:
        raise RuntimeError("exporter down")

    remove = nb.instrument(broken)
    try:
        assert await flaky_workflow().run(x=1) == {"result": 2}
    finally:
        remove()
    assert value(_local(metrics), "nanobrain_runs_finished_total", workflow="flaky") == 1


def test_import_nanobrain_does_not_import_the_observability_dependencies() -> None:
    import subprocess
    import sys

    code = (
        "import sys, nanobrain, nanobrain.observability\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('prometheus_client', 'opentelemetry')]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _local(metrics: RunMetrics) -> dict:  # type: ignore[type-arg]
    from prometheus_client import generate_latest

    return parse(generate_latest(metrics.registry).decode())


HELPER = '''
import urllib.request


def scrape(port: int) -> str:
    """Read this process's own metrics while the run is going on."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return "\\n".join(line for line in text.splitlines() if line.startswith("nanobrain_runs_"))
'''


def test_nanobrain_run_serves_metrics_during_the_run(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    (tmp_path / "nb_metrics_helper.py").write_text(HELPER)
    (tmp_path / "scrape.yaml").write_text(
        "name: scraper\ninputs: {port: int}\noutputs: {result: str}\n"
        "steps:\n  scrape: {function: nb_metrics_helper:scrape}\n"
        "links:\n  - {from: inputs.port, to: scrape.port}\n  - {from: scrape.result, to: outputs.result}\n"
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "nanobrain", "run", "scrape.yaml", "--json", "--metrics-port", str(port)]
    done = subprocess.run([*command, "-i", f"port={port}"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    families = parse(json.loads(done.stdout)["result"] + "\n")
    assert value(families, "nanobrain_runs_started_total", workflow="scraper") == 1
    assert value(families, "nanobrain_runs_in_flight", workflow="scraper") == 1
    # A port that is taken is a clear error, not a traceback.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        failed = subprocess.run(
            [*command[:-1], str(taken), "-i", "port=1"], cwd=tmp_path, env=env, capture_output=True, text=True
        )
    assert failed.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{taken}" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_every_public_name_of_the_package_resolves() -> None:
    import nanobrain.observability as observability

    for name in observability.__all__:
        assert getattr(observability, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        observability.nothing  # noqa: B018
