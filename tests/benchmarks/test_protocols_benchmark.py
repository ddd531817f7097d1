"""The protocol benchmark runs on its own and reports both figures (no performance assertions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.benchmarks.conftest import quick_run

pytest.importorskip("a2a")
pytest.importorskip("mcp")


@pytest.mark.slow
def test_quick_run_reports_a2a_and_mcp_beside_bare_sdk_servers(tmp_path: Path) -> None:
    figures, _ = quick_run("protocols.py", tmp_path, ["a2a_rps", "mcp_rps"])
    assert all(f["target"] == 0.8 and f["higher_is_better"] for f in figures.values())
