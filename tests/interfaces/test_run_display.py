"""How `nanobrain run` shows a run (interfaces/run_display.py): event lines, the live progress view, JSON values."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

import nanobrain as nb
from nanobrain.interfaces import cli, run_display
from nanobrain.interfaces.run_display import EventLines, Progress, Where


def upper(text: str) -> str:
    return text.upper()


def explode(text: str) -> str:
    raise ValueError("cursed")


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=200, highlight=False, soft_wrap=True, color_system=None), buffer


def _shout() -> nb.Workflow:
    workflow = nb.Workflow("shout", inputs={"text": str}, outputs={"result": str})
    workflow.add(nb.FunctionStep(upper))
    workflow.link("inputs.text", "upper.text")
    workflow.link("upper.result", "outputs.result")
    return workflow


def _nested_failing() -> nb.Workflow:
    inner = nb.Workflow("inner", inputs={"text": str}, outputs={"result": str})
    inner.add(nb.FunctionStep(explode))
    inner.link("inputs.text", "explode.text")
    inner.link("explode.result", "outputs.result")
    outer = nb.Workflow("outer", inputs={"text": str}, outputs={"result": str})
    outer.add(inner)
    outer.link("inputs.text", "inner.text")
    outer.link("inner.result", "outputs.result")
    return outer


async def _events(workflow: nb.Workflow, **inputs: object) -> list[nb.RunEvent]:
    events = []
    try:
        async for event in workflow.stream(**inputs):
            events.append(event)
    except Exception:
        pass  # a failing run ends its stream with the error; its events are what we want
    return events


async def test_event_lines_show_each_step_and_the_end_of_the_run() -> None:
    console, buffer = _console()
    printer = EventLines(console, Where("shout"))
    for event in await _events(_shout(), text="hi"):
        printer(event)
    lines = buffer.getvalue().splitlines()
    assert lines[0].startswith("▶ run shout") and "text='hi'" in lines[0]
    assert "→ upper" in lines and any(line.startswith("✓ upper") for line in lines)
    assert "= result: 'HI'" in lines
    assert lines[-1].startswith("■ finished in ")


async def test_event_lines_name_a_failing_step_by_its_path_in_nested_workflows() -> None:
    console, buffer = _console()
    printer = EventLines(console, Where("outer"))
    for event in await _events(_nested_failing(), text="x"):
        printer(event)
    text = buffer.getvalue()
    assert "✗ inner/explode: ValueError: cursed" in text
    assert "run inner" not in text  # a nested run is shown through its parent's step lines
    assert text.splitlines()[-1].startswith("■ failed after ")


async def test_progress_lists_finished_and_failed_steps() -> None:
    progress = Progress("outer", Where("outer"))
    for event in await _events(_nested_failing(), text="x"):
        progress.update(event)
    console, buffer = _console()
    console.print(progress)
    text = buffer.getvalue()
    assert text.startswith("outer failed")
    assert re.search(r"^✗ +inner/explode +failed$", text, re.MULTILINE), text
    assert progress.outcome == "run_failed"


def test_dumps_writes_models_dataclasses_sets_bytes_and_errors_as_json() -> None:
    @dataclass
    class Point:
        x: int

    text = run_display.dumps({"p": Point(1), "s": {2, 1}, "b": b"hi", "e": ValueError("no"), "path": Path("a")})
    assert json.loads(text) == {"p": {"x": 1}, "s": [1, 2], "b": "hi", "e": "ValueError: no", "path": "a"}


def test_the_cli_module_stays_under_600_lines() -> None:
    assert len(Path(cli.__file__).read_text(encoding="utf-8").splitlines()) <= 600
