"""The parallel benchmark runs and reports every figure beside its baseline (its numbers are its output's job)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "parallel.py"
FIGURES = (
    "T",
    "D",
    "D0",
    "F",
    "F.p50",
    "F.p99",
    *(f"B.{b}" for b in ("round_robin", "least_loaded", "fastest_response", "weighted", "power_of_two")),
)


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@pytest.mark.slow
def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "parallel.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(output.read_text())
    assert report["mode"] == "quick" and {"python", "cpu_count"} <= set(report["machine"])
    benchmarks = report["benchmarks"]
    assert set(FIGURES) <= set(benchmarks)
    for key in FIGURES:
        figure = benchmarks[key]
        for field in ("value_min", "value_median", "baseline_min", "baseline_median", "ratio"):
            assert _is_number(figure[field]), (key, field, figure[field])
        assert figure["baseline"], key
        assert f"\n{key} " in done.stdout, key
    # The resilience figures that have targets say whether they met them.
    for key in ("T", "F", "B.fastest_response", "B.power_of_two"):
        assert isinstance(benchmarks[key]["target_met"], bool), key
    assert benchmarks["F"]["details"]["breaker_trips_per_round"]
