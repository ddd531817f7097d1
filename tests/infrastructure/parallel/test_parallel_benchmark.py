"""The parallel benchmark runs and reports every figure beside its baseline (its numbers are its output's job)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.benchmarks.conftest import quick_run

FIGURES = (
    "T",
    "D",
    "D0",
    "F",
    "F.p50",
    "F.p99",
    *(f"B.{b}" for b in ("round_robin", "least_loaded", "fastest_response", "weighted", "power_of_two")),
)


@pytest.mark.slow
def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    # Its baselines (bare Semaphore + gather, no failover, round-robin) run once per figure group.
    figures, _ = quick_run("parallel.py", tmp_path, FIGURES, baselines_every_round=False)
    # The resilience figures that have targets say whether they met them.
    for key in ("T", "F", "B.fastest_response", "B.power_of_two"):
        assert isinstance(figures[key]["target_met"], bool), key
    assert figures["F"]["details"]["breaker_trips_per_round"]
