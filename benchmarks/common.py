"""What every benchmark script shares: machine facts, summaries beside a baseline, the table, the JSON."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True, text=True)
        return head + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def figure(
    name: str,
    unit: str,
    values: Sequence[float],
    baseline: Sequence[float],
    *,
    target: str,
    higher_is_better: bool = False,
    bound: float | None = None,
    on: str = "ratio",
) -> dict[str, Any]:
    """Summarize one figure beside its baseline; `target` is text, `bound` the number it is checked against.

    The ratio is median / baseline median. With `on="ratio"` the bound applies to the ratio,
    with `on="value"` to the median itself.
    """
    median, base_median = statistics.median(values), statistics.median(baseline)
    ratio = median / base_median if base_median else float("nan")
    checked = ratio if on == "ratio" else median
    met = None if bound is None else (checked >= bound if higher_is_better else checked <= bound)
    best = max if higher_is_better else min
    return {
        "name": name,
        "unit": unit,
        "value_min": best(values),
        "value_median": median,
        "baseline_min": best(baseline),
        "baseline_median": base_median,
        "ratio": ratio,
        "target": target,
        "target_met": met,
        "rounds": list(values),
        "baseline_rounds": list(baseline),
    }


def _fmt(x: float) -> str:
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def render(rows: Sequence[dict[str, Any]]) -> str:
    header = ("figure", "unit", "best", "median", "base best", "base med", "ratio", "target", "met")
    table = [header]
    for r in rows:
        met = {True: "yes", False: "NO", None: "-"}[r["target_met"]]
        table.append(
            (
                r["name"],
                r["unit"],
                _fmt(r["value_min"]),
                _fmt(r["value_median"]),
                _fmt(r["baseline_min"]),
                _fmt(r["baseline_median"]),
                f"{r['ratio']:.2f}",
                r["target"],
                met,
            )
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def write_results(path: Path, benchmark: str, rows: Sequence[dict[str, Any]], **extra: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": benchmark,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": machine_info(),
        "figures": list(rows),
        **extra,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
