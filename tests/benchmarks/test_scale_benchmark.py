"""The scale-out benchmark runs on its own and reports its figures (no performance assertions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.benchmarks.conftest import quick_run

pytest.importorskip("distributed", reason="the Dask figure needs the `dask` extra")
pytest.importorskip("fastapi", reason="the replica figures need the `server` extra")


@pytest.mark.slow
def test_quick_run_reports_the_dask_fan_out_and_the_replicas(tmp_path: Path) -> None:
    figures, printed = quick_run("scale.py", tmp_path, ["dask", "replicas_c16_rps"])
    dask = figures["dask"]
    assert dask["higher_is_better"] and dask["target"] == 0.9 and dask["unit"] == "steps/s"
    assert "client.map" in dask["baseline"] and "through client.map" in printed
    assert figures["replicas_c16_rps"]["higher_is_better"] is True
    assert "CPU ms per request with 2 replicas" in printed
