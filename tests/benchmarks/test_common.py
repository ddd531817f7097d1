"""benchmarks/common.py: figures and their targets, the table, the argument conventions (no benchmark runs)."""

from __future__ import annotations

import importlib.util

import pytest
from tests.benchmarks.conftest import BENCHMARKS

_spec = importlib.util.spec_from_file_location("benchmark_common", BENCHMARKS / "common.py")
assert _spec is not None and _spec.loader is not None
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def test_a_target_bounds_the_ratio_or_the_value() -> None:
    on_ratio = common.figure("r", "ratio figure", "us", "plain", [2, 4, 6], [1, 2, 3], target=2.5)
    assert (on_ratio["ratio"], on_ratio["target_op"], on_ratio["target_on"], on_ratio["target_met"]) == (
        2.0,
        "<=",
        "ratio",
        True,
    )
    on_value = common.figure("v", "value figure", "us", "plain", [2, 4, 6], [1, 2, 3], target=3, target_on="value")
    assert on_value["target_on"] == "value" and on_value["target_met"] is False  # median 4 > 3, ratio 2 would pass
    faster = common.figure("t", "throughput", "runs/s", "plain", [5, 6], [10, 10], higher_is_better=True, target=0.5)
    assert faster["target_op"] == ">=" and faster["target_met"] is True
    untargeted = common.figure("n", "reported only", "ms", "plain", [1.0, 2.0], [1.0, 1.0])
    assert untargeted["target_op"] is None and untargeted["target_met"] is None
    assert on_ratio["value_min"] == 2 and on_ratio["rounds"] == {"values": [2, 4, 6], "baselines": [1, 2, 3]}


def test_the_table_shows_each_figure_with_its_own_target() -> None:
    rows = [
        common.figure("r", "ratio figure", "us", "plain r", [2, 4, 6], [1, 2, 3], target=2.5),
        common.figure("v", "value figure", "us", "plain v", [2, 4, 6], [1, 2, 3], target=3, target_on="value"),
        common.figure("n", "reported only", "ms", "plain n", [1500, 2000], [0.0251, 0.03]),
    ]
    lines = common.render(rows, details=[("n", "a detail")]).splitlines()
    table = {line.split()[0]: line for line in lines[2:5]}
    assert table["r"].endswith("ratio <= 2.5  yes")
    assert table["v"].endswith("value <= 3    NO")
    assert table["n"].rstrip().endswith("-") and "1,500" in table["n"] and "0.0251" in table["n"]
    assert "  r  plain r" in lines and lines[-2:] == ["details:", "  n  a detail"]
    assert common.by_key(rows)["v"]["name"] == "value figure" and "key" not in common.by_key(rows)["v"]


def test_arguments_follow_the_results_convention() -> None:
    parser = common.BenchmarkArguments("Demo.\n\nMore.", "demo", rounds=(9, 5), min_repeat=5)
    full, quick = parser.parse([]), parser.parse(["--quick"])
    assert (full.output, full.repeat) == (common.RESULTS / "demo.json", 9)
    assert (quick.output, quick.repeat) == (common.RESULTS / "demo-quick.json", 5)
    assert parser.parse(["--output", "/tmp/x.json", "--repeat", "7"]).repeat == 7
    with pytest.raises(SystemExit):
        parser.parse(["--repeat", "3"])
    assert not hasattr(common.BenchmarkArguments("Demo.", "plain").parse([]), "repeat")
    assert "rounds per figure (default: 9, quick: 5)" in " ".join(parser.format_help().split())
    partial = common.BenchmarkArguments("Demo.", "demo", rounds=(5, 2), rounds_of="of T and D")
    assert "rounds of T and D (default: 5, quick: 2)" in " ".join(partial.format_help().split())
