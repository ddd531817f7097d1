"""The chat benchmark runs the CLI and the workflow and reports every figure (no performance assertions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.benchmarks.conftest import LOCAL_MODEL, local_model_available, quick_run
from tests.conftest import require


@pytest.mark.slow
def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    require(local_model_available(), LOCAL_MODEL)
    figures, _ = quick_run("chat.py", tmp_path, ("first_token", "last_token", "turn"))
    assert figures["first_token"]["value_median"] <= figures["last_token"]["value_median"]
