"""`nanobrain validate`: check a workflow file, running none of its code unless `--import` is given."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from .cli import WORKFLOW_IS_CODE, FileArgument, UsageProblem, _load, _out, _reporting

HELP = (
    "Check a workflow file; list every problem (exit 1) or say it is valid.\n\n"
    "By default none of the code the file references is run: each module outside NanoBrain is located "
    "without importing it, so what it defines (functions, ports, types) is not checked. --import imports "
    "the modules, running their code, and checks the whole graph.\n\n" + WORKFLOW_IS_CODE
)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def validate(
    ctx: typer.Context,
    file: FileArgument,
    import_code: Annotated[
        bool,
        typer.Option(
            "--import",
            help="Import the modules the workflow names (this RUNS their code) to check functions, ports and types.",
        ),
    ] = False,
) -> None:
    with _reporting(ctx, file):
        if import_code:
            workflow = _load(file)
            name, steps = workflow.name, len(workflow.steps)
            inputs, outputs = len(workflow.inputs), len(workflow.outputs)
            note = ""
        else:
            from ..config.check import check_workflow

            if not file.exists():
                raise UsageProblem(f"file not found: {file}")
            report = check_workflow(file)
            name, steps, inputs, outputs = report.name, report.steps, report.inputs, report.outputs
            note = " (modules located, not imported: --import also checks functions, ports and types)"
        _out().print(
            Text.assemble(
                ("OK ", "bold green"),
                f"workflow {name!r}: {_plural(steps, 'step')}, {_plural(inputs, 'input')}, "
                f"{_plural(outputs, 'output')}{note}",
            )
        )
