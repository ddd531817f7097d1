"""The engine benchmark runs and reports every figure (no performance assertions: that is its output's job)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.benchmarks.conftest import quick_run


@pytest.mark.slow
def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    figures, printed = quick_run("engine.py", tmp_path, ("A", "B", "M", "S", "Cy", "Cm", "import"))
    # Every engine figure has a target (design.md) and says whether it was met.
    for key, figure in figures.items():
        assert isinstance(figure["target_met"], bool), key
    assert "ratio" in printed
