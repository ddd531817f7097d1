"""Plugins by entry points: a real installed distribution (its .dist-info on sys.path) adds a step kind.

One plugin of the distribution fails to import: it is reported with its name and error, and the
other still loads and serves workflows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from nanobrain.config.loader import load_workflow
from nanobrain.plugins import load_plugins

SHOUT = '''
from typing import Literal

from nanobrain.config.models import StepConfig
from nanobrain.config.registry import register_step_kind
from nanobrain.core.steps import FunctionStep


class ShoutConfig(StepConfig):
    kind: Literal["shout"] = "shout"
    times: int = 1


def build(config, build):
    def shout(text: str) -> str:
        return text.upper() + "!" * config.times

    return FunctionStep(shout, build.name, **build.options(config))


def register():
    register_step_kind("shout", ShoutConfig, build)
'''


def install_plugins(site: Path) -> Path:
    """What `pip install` leaves for a package with two `nanobrain.plugins` entry points."""
    info = site / "demo_plugins-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-plugins\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[nanobrain.plugins]\nshout = demo_shout:register\nbroken = demo_missing_module:register\n"
    )
    (site / "demo_shout.py").write_text(SHOUT)
    return site


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = install_plugins(tmp_path / "site")
    monkeypatch.syspath_prepend(str(path))
    yield path
    monkeypatch.undo()
    sys.modules.pop("demo_shout", None)
    load_plugins(refresh=True)  # forget this test's plugins


async def test_a_plugin_step_kind_runs_in_a_workflow_and_a_broken_plugin_is_reported(
    site: Path, tmp_path: Path
) -> None:
    plugins = {p.name: p for p in load_plugins(refresh=True)}
    assert plugins["shout"].ok and plugins["shout"].distribution == "demo-plugins 1.0"
    assert plugins["broken"].error == "ModuleNotFoundError: No module named 'demo_missing_module'"
    flow = tmp_path / "loud.yaml"
    flow.write_text(textwrap.dedent("""
        name: loud
        inputs: {text: str}
        outputs: {loud: str}
        steps:
          up: {kind: shout, times: 2}
        links:
          - {from: inputs.text, to: up.text}
          - {from: up.result, to: outputs.loud}
    """))
    workflow = load_workflow(flow)
    try:
        assert await workflow.run(text="hi") == {"loud": "HI!!"}
    finally:
        await workflow.aclose()


def test_plugins_list_shows_each_plugin_and_exits_1_when_one_failed(tmp_path: Path) -> None:
    site = install_plugins(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "nanobrain", "plugins", "list"],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert "shout = demo_shout:register (demo-plugins 1.0): loaded" in lines
    assert (
        "broken = demo_missing_module:register (demo-plugins 1.0): failed: "
        "ModuleNotFoundError: No module named 'demo_missing_module'"
    ) in lines
    assert "Traceback" not in done.stderr


def test_plugins_list_without_plugins_says_so() -> None:
    done = subprocess.run([sys.executable, "-m", "nanobrain", "plugins", "list"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and "no plugins installed" in done.stderr
