"""The observability benchmark runs and reports every figure (no performance assertions: that is its output's job)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.benchmarks.conftest import quick_run

pytest.importorskip("prometheus_client")
pytest.importorskip("opentelemetry.sdk")


@pytest.mark.slow
def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    keys = (
        ["chain-off"]
        + [f"{w}-{m}" for w in ("chain", "fan") for m in ("events", "metrics", "tracing", "both")]
        + ["sink-metrics", "sink-tracing", "sink-both"]
    )
    figures, printed = quick_run("observability.py", tmp_path, keys)
    for key, figure in figures.items():
        # Every figure has its goal (design.md), except the no-op sink's, which only shows the engine's part.
        assert isinstance(figure["target_met"], bool) or key.endswith("-events"), key
        if key.startswith(("chain-", "fan-")) and key != "chain-off":
            assert "extra_us_per_step_median" in figure["details"], key
    assert "python_call_ns_before_after" in printed or "plain Python call" in printed
