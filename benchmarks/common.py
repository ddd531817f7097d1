"""What every benchmark script shares: arguments, machine facts, figures beside a baseline, the table, the JSON.

Scripts run as `python benchmarks/NAME.py`, which puts this folder on sys.path: `from common import ...`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.metadata
import json
import os
import platform
import socket
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import nanobrain

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
POSTGRES_URL = os.environ.get("NANOBRAIN_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("NANOBRAIN_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
INTERLEAVED = "baselines (same process, interleaved with the NanoBrain rounds):"

T = TypeVar("T")


# -- the machine and the code ------------------------------------------------------------------------
def machine_info(*packages: str, **extra: Any) -> dict[str, Any]:
    """Python, CPUs, platform and load average; the installed versions of `packages`; then `extra`."""
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
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        pass
    for package in packages:
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    info.update(extra)
    return info


def git_commit() -> str | None:
    """The short HEAD commit, with `+dirty` when `src/` has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True, text=True)
        return head + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def reachable(url: str, default_port: int) -> bool:
    """Whether a server listens at the URL's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


async def timed(work: Awaitable[Any]) -> float:
    """Seconds spent awaiting `work` (a coroutine not yet started), after a `gc.collect()`."""
    gc.collect()
    started = time.perf_counter()
    await work
    return time.perf_counter() - started


# -- figures -------------------------------------------------------------------------------------------
def rounded(x: float) -> float:
    """Four significant digits, as the JSON keeps figures."""
    return float(f"{x:.4g}")


def figure(
    key: str,
    name: str,
    unit: str,
    baseline: str,
    values: Sequence[float],
    baselines: Sequence[float],
    *,
    higher_is_better: bool = False,
    target: float | None = None,
    target_on: str = "ratio",
    details: dict[str, Any] | None = None,
    value_min: float | None = None,
    value_median: float | None = None,
) -> dict[str, Any]:
    """One figure beside its baseline: min and median over rounds, the ratio of medians, the target check.

    `target` bounds the ratio (`target_on="ratio"`) or the median itself (`"value"`): from above, or
    from below when `higher_is_better`. `value_min` / `value_median` replace the summaries of
    `values` for a figure that is a difference of two measured parts.
    """
    median, baseline_median = statistics.median(values), statistics.median(baselines)
    ratio = median / baseline_median if baseline_median else float("nan")
    value_median = median if value_median is None else value_median
    met = None
    if target is not None:
        checked = ratio if target_on == "ratio" else value_median
        met = checked >= target if higher_is_better else checked <= target
    return {
        "key": key,
        "name": name,
        "unit": unit,
        "value_min": rounded(min(values) if value_min is None else value_min),
        "value_median": rounded(value_median),
        "baseline_min": rounded(min(baselines)),
        "baseline_median": rounded(baseline_median),
        "ratio": rounded(ratio),
        "higher_is_better": higher_is_better,
        "target": target,
        "target_op": None if target is None else (">=" if higher_is_better else "<="),
        "target_on": None if target is None else target_on,
        "target_met": met,
        "baseline": baseline,
        "rounds": {"values": [rounded(v) for v in values], "baselines": [rounded(v) for v in baselines]},
        "details": details or {},
    }


def by_key(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows by their key, without it (the shape of the JSON's `benchmarks`)."""
    keyed: dict[str, dict[str, Any]] = {}
    for row in rows:
        assert row["key"] not in keyed, f"two figures are called {row['key']!r}"
        keyed[row["key"]] = {k: v for k, v in row.items() if k != "key"}
    return keyed


# -- the table -----------------------------------------------------------------------------------------
def number(x: float) -> str:
    """A table cell: whole numbers from 100 up (thousands separated), else three significant digits."""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:#.3g}".rstrip(".")


def render(
    rows: Sequence[dict[str, Any]], *, caption: str = INTERLEAVED, details: Sequence[tuple[str, str]] = ()
) -> str:
    """The figures beside their baselines, with ratio and target; then what each baseline is, and `details`."""
    header = ("", "figure", "unit", "min", "median", "base min", "base med", "ratio", "target", "met")
    table = [header]
    for row in rows:
        target = "-" if row["target"] is None else f"{row['target_on']} {row['target_op']} {row['target']:g}"
        summaries = (row["value_min"], row["value_median"], row["baseline_min"], row["baseline_median"])
        met = {True: "yes", False: "NO", None: "-"}[row["target_met"]]
        table.append(
            (row["key"], row["name"], row["unit"], *map(number, summaries), f"{row['ratio']:.2f}", target, met)
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = []
    for line in table:
        cells = [c.rjust(w) if 3 <= i <= 7 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    key_width = max([len(row["key"]) for row in rows] + [len(key) for key, _ in details], default=0)
    lines += ["", caption, *(f"  {row['key']:<{key_width}}  {row['baseline']}" for row in rows)]
    if details:
        lines += ["", "details:", *(f"  {key:<{key_width}}  {text}" for key, text in details)]
    return "\n".join(lines)


# -- arguments, the run, the JSON ------------------------------------------------------------------------
def results_path(name: str, quick: bool) -> Path:
    """`results/NAME.json`, or `results/NAME-quick.json` for a quick run (not comparable to a full one)."""
    return RESULTS / f"{name}{'-quick' if quick else ''}.json"


class BenchmarkArguments(argparse.ArgumentParser):
    """--quick and --output for every script; --repeat when `rounds` (full, quick) is given.

    `rounds_of` says in --help what the rounds apply to, where that is not every figure.
    """

    def __init__(
        self,
        doc: str | None,
        name: str,
        *,
        rounds: tuple[int, int] | None = None,
        min_repeat: int = 1,
        rounds_of: str = "per figure",
    ):
        super().__init__(description=(doc or "").split("\n\n")[0])
        self.name, self.rounds, self.min_repeat = name, rounds, min_repeat
        self.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not comparable to a full one")
        self.add_argument("--output", type=Path, help=f"JSON path (default: benchmarks/results/{name}[-quick].json)")
        if rounds:
            self.add_argument(
                "--repeat", type=int, help=f"measurement rounds {rounds_of} (default: {rounds[0]}, quick: {rounds[1]})"
            )

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """The arguments, with the default output path and (given `rounds`) the number of rounds filled in."""
        args = self.parse_args(argv)
        if self.rounds:
            if args.repeat is not None and args.repeat < self.min_repeat:
                self.error(f"--repeat must be at least {self.min_repeat}")
            full, quick = self.rounds
            args.repeat = args.repeat or (quick if args.quick else full)
        args.output = args.output or results_path(self.name, args.quick)
        return args


class BenchmarkRun:
    """One run of a script: prints its header, times its phases, then writes the JSON and prints the table."""

    def __init__(self, title: str, args: argparse.Namespace, machine: dict[str, Any] | None = None) -> None:
        self.args = args
        self.machine = machine or machine_info()
        self.started = time.perf_counter()
        rounds = f", {args.repeat} rounds" if getattr(args, "repeat", None) else ""
        print(
            f"{title} ({'quick' if args.quick else 'full'}{rounds}) - Python {self.machine['python']}, "
            f"{self.machine['cpu_count']} CPUs, load average {self.machine.get('load_average')}",
            flush=True,
        )

    def phase(self, label: str, work: Callable[[], T]) -> T:
        """`work()`, reporting how long it took."""
        started = time.perf_counter()
        result = work()
        print(f"  {label} done in {time.perf_counter() - started:.1f} s", flush=True)
        return result

    def finish(
        self,
        rows: Sequence[dict[str, Any]],
        params: dict[str, Any],
        *,
        caption: str = INTERLEAVED,
        details: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Write the JSON to `--output` and print the table."""
        elapsed = time.perf_counter() - self.started
        report = {
            "machine": self.machine,
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "nanobrain": {"version": nanobrain.__version__, "commit": git_commit()},
            "mode": "quick" if self.args.quick else "full",
            "params": params,
            "elapsed_s": round(elapsed, 1),
            "benchmarks": by_key(rows),
        }
        output: Path = self.args.output
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2) + "\n")
        print()
        print(render(rows, caption=caption, details=details))
        print(f"\nwrote {output} ({elapsed:.1f} s)")
