"""The storage benchmark reports its history rows and the cache rows of cache_bench.py (no performance assertions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.benchmarks.conftest import quick_run
from tests.conftest import require
from tests.infrastructure.conftest import _reachable

HISTORY = ("sqlite_append", "sqlite_read", "postgres_append", "postgres_read")
CACHE = ("L1", "L2", "L3", "L3-pg")


@pytest.mark.slow
def test_quick_run_reports_history_and_cache_rows(tmp_path: Path) -> None:
    require(_reachable("127.0.0.1", 6379), "Redis is not reachable on 127.0.0.1:6379")
    require(_reachable("127.0.0.1", 5432), "PostgreSQL is not reachable on 127.0.0.1:5432")
    figures, printed = quick_run("storage.py", tmp_path, HISTORY + CACHE)
    for key in HISTORY:
        assert (figures[key]["target_on"], figures[key]["target_op"]) == ("ratio", ">="), key
    # Each row keeps its own target: L1's bounds the value, and the table says so.
    assert figures["L1"]["target_on"] == "value"
    l1_line = next(line for line in printed.splitlines() if line.startswith("L1 "))
    assert "value <= 10" in l1_line
