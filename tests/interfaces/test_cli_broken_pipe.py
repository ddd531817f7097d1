"""`nanobrain run ... | head -1`: a reader that goes away ends the command quietly, like other Unix tools."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "examples" / "pipeline.yaml"


@pytest.mark.parametrize(
    "options",
    [["--stream", "--json"], ["--stream"], ["--json"], []],
    ids=["stream-json", "stream", "json", "plain"],
)
def test_a_closed_stdout_exits_141_without_a_message(options: list[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line: every write fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "nanobrain", "run", str(PIPELINE), "--input", "text=hi", *options],
            stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=60,
            env={k: v for k, v in os.environ.items() if k != "NANOBRAIN_DEBUG"},
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 141
