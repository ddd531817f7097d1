"""The server benchmark starts both servers, loads them and reports every figure (no performance assertions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.benchmarks.conftest import local_model_available, quick_run

pytest.importorskip("fastapi", reason="the server benchmark needs the `server` extra")


@pytest.mark.slow
def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    figures = [
        f"{workload}_c{clients}_{metric}"
        for workload in ("workflow", "chat")
        for clients in (1, 16, 64)
        for metric in ("rps", "p50", "p99")
    ]
    if local_model_available():  # else the script leaves the streaming figures out, and says so
        figures += ["stream_first_token", "stream_tokens_per_s"]
    reported, _ = quick_run("server.py", tmp_path, figures)
    for workload in ("workflow", "chat"):
        assert reported[f"{workload}_c1_p50"]["value_median"] <= reported[f"{workload}_c1_p99"]["value_median"]
