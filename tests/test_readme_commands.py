"""The README opens with two commands, and CI runs exactly those (so they stay true)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    assert block, "README.md must open with a ```bash block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_starts_with_two_commands_that_ci_runs() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    setup_and_run, run_tests = commands
    ci = (REPO / ".ci" / "run").read_text()
    assert run_tests in ci, "the test command in .ci/run must be the README's, verbatim"
    setup = setup_and_run.split("&&")[0].strip()
    assert setup in ci, "CI must run the README's set-up step as a new user would"
    assert "nanobrain chat" in setup_and_run and "nanobrain chat --once" in ci
