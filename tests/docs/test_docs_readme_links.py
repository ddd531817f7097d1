"""The README points into the docs, and every relative link in it resolves to a file."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def readme_links() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_the_readme_links_into_the_docs() -> None:
    assert any(link.startswith("docs/") for link in readme_links())


def test_every_relative_link_in_the_readme_resolves() -> None:
    missing = [link for link in readme_links() if not (REPO / link.split("#")[0]).exists()]
    assert missing == []
