"""The README's Python examples run and print what their comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def python_blocks() -> list[str]:
    section = (REPO / "README.md").read_text().split("## Workflows in Python", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_every_python_example_prints_what_its_comments_say() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 2
    for block in blocks:
        expected = [m.group(1).strip() for m in re.finditer(r"^print\(.*\)\s+# (.*)$", block, re.MULTILINE)]
        assert expected, block
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
        assert printed.getvalue().splitlines() == expected
