"""The LLM benchmark runs and reports every figure beside its baseline (no performance assertions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.benchmarks.conftest import LOCAL_MODEL, local_model_available, quick_run
from tests.conftest import require


@pytest.mark.slow
def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    require(local_model_available(), LOCAL_MODEL)
    figures, _ = quick_run("llm.py", tmp_path, ("tps", "ttft", "agent"))
    assert (figures["tps"]["target_on"], figures["tps"]["target_op"]) == ("ratio", ">=")
    assert figures["tps"]["details"]["max_tokens"] == 32
