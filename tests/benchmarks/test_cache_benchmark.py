"""The cache benchmark runs on its own and reports every level it can reach (no performance assertions)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import require
from tests.infrastructure.conftest import _reachable

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "cache_bench.py"
NUMBERS = ("value_min", "value_median", "baseline_min", "baseline_median", "ratio", "target")


@pytest.mark.slow
def test_quick_run_reports_l1_l2_l3(tmp_path: Path) -> None:
    require(_reachable("127.0.0.1", 6379), "Redis is not reachable on 127.0.0.1:6379")
    require(_reachable("127.0.0.1", 5432), "PostgreSQL is not reachable on 127.0.0.1:5432")
    output = tmp_path / "cache.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(output.read_text())["benchmarks"]
    assert set(rows) == {"L1", "L2", "L3", "L3-pg"}
    for key, row in rows.items():
        assert row["name"] and row["unit"] == "us" and row["baseline"], key
        for field in NUMBERS:
            value = row[field]
            assert isinstance(value, int | float) and math.isfinite(value) and value > 0, (key, field, value)
        assert row["value_min"] <= row["value_median"] and row["baseline_min"] <= row["baseline_median"], key
        assert len(row["rounds"]["values"]) >= 5 and isinstance(row["target_met"], bool), key
        assert f"\n{key} " in done.stdout, key
