"""The engine benchmark runs and reports every figure (no performance assertions: that is its output's job)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "engine.py"
FIGURES = ("A", "B", "Cy", "import")
NUMBERS = ("value_min", "value_median", "baseline_min", "baseline_median", "ratio", "target")


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@pytest.mark.slow
def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "engine.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(output.read_text())

    assert {"python", "cpu_count", "platform"} <= set(report["machine"])
    assert report["timestamp"]
    assert report["mode"] == "quick"
    benchmarks = report["benchmarks"]
    assert set(FIGURES) <= set(benchmarks)
    for key in FIGURES:
        figure = benchmarks[key]
        assert figure["name"] and figure["unit"], key
        for field in NUMBERS:
            assert _is_number(figure[field]), (key, field, figure[field])
        assert figure["value_min"] <= figure["value_median"] or key == "import", key
        assert figure["baseline_min"] <= figure["baseline_median"], key
        assert isinstance(figure["target_met"], bool), key
        assert figure["target_op"] in ("<=", ">="), key
    # The printed table shows every figure beside its baseline.
    for key in FIGURES:
        assert f"\n{key} " in done.stdout, key
    assert "ratio" in done.stdout
