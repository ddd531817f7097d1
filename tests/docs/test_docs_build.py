"""The site builds with `mkdocs build --strict`, offline: a broken link, reference or include fails it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("mkdocs is not installed: pip install -e '.[docs]'", pytrace=False)
    out = tmp_path_factory.mktemp("site")
    env = {
        **os.environ,
        # Offline: any request at build time goes to a closed port and fails.
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
        "NO_MKDOCS_2_WARNING": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "--site-dir", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_every_nav_page_is_built(site: Path) -> None:
    import yaml

    def pages(nav: object) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, dict):
            return [p for value in nav.values() for p in pages(value)]
        if isinstance(nav, list):
            return [p for item in nav for p in pages(item)]
        return []

    config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=yaml.Loader)  # !!python/name tags: our own file
    def html(page: str) -> Path:
        path = Path(page)
        return site / (path.parent if path.name == "index.md" else path.with_suffix("")) / "index.html"

    built = [html(page) for page in pages(config["nav"])]
    assert len(built) > 20
    assert [p for p in built if not p.exists()] == []


def test_generated_diagrams_and_api_reference_are_in_the_pages(site: Path) -> None:
    links = (site / "concepts" / "links" / "index.html").read_text()
    assert 'class="mermaid"' in links and "step_classify" in links  # the router diagram, from to_mermaid
    api = (site / "reference" / "api" / "index.html").read_text()
    names = ("nanobrain.core.workflow.Workflow", "nanobrain.agents.agent.Agent", "nanobrain.core.retry.RetryPolicy")
    for name in names:
        assert f'id="{name}"' in api, name
    guide = (site / "guides" / "durable-runs" / "index.html").read_text()
    assert "idempotency_key" in guide  # the guide's code file was included
