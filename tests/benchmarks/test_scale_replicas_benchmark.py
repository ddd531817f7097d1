"""The replica benchmark starts two replicas, loads one and then both, and reports the figures (no performance
assertions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.benchmarks.conftest import quick_run

pytest.importorskip("fastapi", reason="the replica benchmark needs the `server` extra")


@pytest.mark.slow
def test_quick_run_reports_the_replica_throughput(tmp_path: Path) -> None:
    reported, printed = quick_run("scale_replicas.py", tmp_path, ["replicas_c16_rps"])
    assert reported["replicas_c16_rps"]["higher_is_better"] is True
    assert "CPU ms per request with 2 replicas" in printed
