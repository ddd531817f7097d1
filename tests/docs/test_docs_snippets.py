"""The code blocks of the README and of the docs pages run (or are named here with why they cannot).

Guide code lives in files that `test_docs_guides.py` runs; this test covers the blocks written
inline in Markdown, so that a snippet that drifts from the code fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]

NOT_RUN = {
    "OpenAI(base_url=": "needs a running server and a key: docs/guides/code/serve_http.py runs the same calls",
}
"""Inline Python blocks that are not executed here, by a string they contain, with the reason."""


def blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for code in re.findall(rf"^ *```{language}\n(.*?)^ *```", page.read_text(), re.S | re.M):
            if "--8<--" not in code:  # an included file: tested where the file is
                found.append((f"{page.relative_to(REPO)}", code))
    return found


PYTHON = blocks("python")


def test_the_readme_has_python_blocks_to_run() -> None:
    assert any(page == "README.md" for page, _ in PYTHON)


@pytest.mark.parametrize(("page", "code"), PYTHON, ids=[f"{p}:{i}" for i, (p, _) in enumerate(PYTHON)])
def test_python_block_runs(page: str, code: str, tmp_path: Path) -> None:
    skipped = [reason for marker, reason in NOT_RUN.items() if marker in code]
    if skipped:
        pytest.skip(skipped[0])
    script = tmp_path / "block.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{page}: block failed:\n{code}\n{done.stderr}"
    # A block that shows its output in a comment (`print(...)  # {'result': 2}`) must print exactly that.
    shown = re.findall(r"print\(.*\)\s+#\s*(.+)$", code, re.M)
    if shown:
        assert done.stdout.splitlines()[-len(shown):] == [s.strip() for s in shown]


def test_the_readme_alert_rules_block_loads(tmp_path: Path) -> None:
    from nanobrain.observability.alerts import load_alert_rules

    (rules_block,) = [code for page, code in blocks("yaml") if page == "README.md" and "alerts:" in code]
    path = tmp_path / "alerts.yaml"
    path.write_text(rules_block.replace("${ALERT_WEBHOOK}", "http://127.0.0.1:9/hook"))
    rules, webhook = load_alert_rules(path)
    assert [rule.name for rule in rules] == ["chat errors", "breaker open", "slow steps"]
    assert webhook == "http://127.0.0.1:9/hook"
