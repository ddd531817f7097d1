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


def _packages(extras: list[str]) -> set[str]:
    """The distributions `pip install -e .[extras]` installs beyond the core, nested extras followed."""
    import tomllib

    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    found: set[str] = set()
    for extra in extras:
        for requirement in optional[extra]:
            nested = re.fullmatch(r"nanobrain\[(.+)\]", requirement)
            if nested:
                found |= _packages(nested.group(1).split(","))
            else:
                found.add(re.split(r"[\[<>=!~ ]", requirement, maxsplit=1)[0])
    return found


def test_the_readmes_first_command_installs_every_provider_in_its_table() -> None:
    script = (REPO / "scripts" / "setup.sh").read_text()
    product = re.search(r'^extras="([^"]+)"', script, re.MULTILINE)
    assert product, "scripts/setup.sh must set the product's extras"
    assert "scripts/setup.sh" in readme_commands()[0]
    table = (REPO / "README.md").read_text()
    assert "`openai:" in table and "`anthropic:" in table
    assert {"openai", "anthropic", "llama-cpp-python"} <= _packages(product.group(1).split(","))
