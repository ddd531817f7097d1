"""The fenced code blocks of the README and the docs pages, and how each one is run.

A block may be preceded by HTML comments (invisible on the page) that tell the tests about it:

    <!-- not-run: why it cannot run here -->   skipped, with the reason (counted and listed)
    <!-- file: NAME -->                        also saved as NAME in the page's folder, for later blocks
    <!-- expect: TEXT -->                      its output must contain TEXT (may be repeated)
    <!-- needs: local-model -->                needs the bundled model (skips, or fails in CI)
    <!-- env: NAME=VALUE -->                   an environment variable for this block

Python blocks run as scripts, shell blocks with bash (`nanobrain` and `.venv/bin/nanobrain` are the
interpreter running the tests), YAML workflows are loaded with `nanobrain validate --import` and
YAML alert rules with `load_alert_rules`. All blocks of one page share a scratch folder (with copies
of `examples/` and `docs/guides/code/`) and a fresh NANOBRAIN_HOME.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]

RUN = ("python", "yaml", "bash")
"""Languages whose blocks are executed (or marked not-run with a reason)."""
SHOWN = ("", "text", "mermaid", "json")
"""Languages that are output or diagrams, never executed."""
DIRECTIVES = ("not-run", "file", "expect", "needs", "env")
NEEDS = ("local-model",)

_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\s*$")
_DIRECTIVE = re.compile(r"^ *<!--\s*(?P<key>[\w-]+)\s*:?\s*(?P<value>.*?)\s*-->\s*$")


@dataclass
class Block:
    page: str
    line: int
    language: str
    code: str
    directives: dict[str, list[str]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def included(self) -> bool:
        """The block includes a file (`--8<--`): that file is run by the test of its guide."""
        return "--8<--" in self.code

    def first(self, key: str) -> str | None:
        values = self.directives.get(key)
        return values[0] if values else None


def parse(text: str, page: str) -> list[Block]:
    """Every fenced block of a Markdown text, with the directives in the comments just above it."""
    lines = text.splitlines()
    found: list[Block] = []
    pending: dict[str, list[str]] = {}
    i = 0
    while i < len(lines):
        directive = _DIRECTIVE.match(lines[i])
        fence = _FENCE.match(lines[i])
        if directive and directive["key"] in DIRECTIVES:
            pending.setdefault(directive["key"], []).append(directive["value"])
        elif fence:
            start, indent = i, fence["indent"]
            body: list[str] = []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
                i += 1
            code = textwrap.dedent("\n".join(body)) + "\n"
            found.append(Block(page, start + 1, fence["lang"], code, pending))
            pending = {}
        elif lines[i].strip():
            pending = {}  # directives belong to the block right below them
        i += 1
    return found


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in parse(page.read_text(), str(page.relative_to(REPO)))]


def prepare_folder(folder: Path, blocks: list[Block]) -> dict[str, str]:
    """The page's scratch folder and the environment its blocks run in."""
    shutil.copytree(REPO / "examples", folder / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        REPO / "docs" / "guides" / "code", folder / "docs" / "guides" / "code",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    bin_dir = folder / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "nanobrain").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m nanobrain "$@"\n')
    (bin_dir / "nanobrain").chmod(0o755)
    for name in ("python", "python3"):  # a wrapper, not a symlink: a venv's python finds its venv by its own path
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        (bin_dir / name).chmod(0o755)
    for block in blocks:
        name = block.first("file")
        if name:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code)
    home = folder / ".nanobrain"
    home.mkdir(mode=0o700)
    path = os.pathsep.join([str(REPO / "src"), str(folder), os.environ.get("PYTHONPATH", "")])
    return {
        **os.environ,
        "NANOBRAIN_HOME": str(home),
        "PYTHONPATH": path.rstrip(os.pathsep),
        "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }


def run_block(block: Block, folder: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run one block in its page's folder; the caller checks the result."""
    env = dict(env)
    for assignment in block.directives.get("env", []):
        name, _, value = assignment.partition("=")
        env[name.strip()] = value.strip()
    if block.language == "python":
        script = folder / f"block_{block.line}.py"
        script.write_text(block.code)
        command = [sys.executable, str(script)]
    elif block.language == "bash":
        command = ["bash", "-euo", "pipefail", "-c", block.code]
    elif block.language == "yaml":
        command = yaml_command(block, folder)
    else:
        raise ValueError(f"{block.id}: {block.language!r} blocks are not run")
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)


def yaml_command(block: Block, folder: Path) -> list[str]:
    import yaml

    doc = yaml.safe_load(block.code)
    if not isinstance(doc, dict):
        raise AssertionError(f"{block.id}: a YAML block must be a mapping (a workflow or alert rules)")
    path = folder / (block.first("file") or f"block_{block.line}.yaml")
    path.write_text(block.code)
    if "steps" in doc:
        return [sys.executable, "-m", "nanobrain", "validate", "--import", str(path)]
    if "alerts" in doc:
        check = (
            "import sys; from nanobrain.observability.alerts import load_alert_rules; "
            "rules, hook = load_alert_rules(sys.argv[1]); print(len(rules), 'rules')"
        )
        return [sys.executable, "-c", check, str(path)]
    raise AssertionError(
        f"{block.id}: a YAML block that is neither a workflow (`steps:`) nor alert rules (`alerts:`): "
        "include a tested file with --8<-- or mark it <!-- not-run: why -->"
    )


def shown_output(code: str) -> list[str]:
    """What a Python block says it prints: `print(...)  # {'result': 2}` lines, in order."""
    return [s.strip() for s in re.findall(r"print\(.*\)\s+#\s*(.+)$", code, re.M)]
