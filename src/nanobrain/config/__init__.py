"""Configuration: pydantic models are the schema; YAML documents load into the same objects
that the Python constructors build. A workflow file is code, like a Python file: loading it
imports the modules it names (see `nanobrain.core.imports` for what keeps that safe)."""

from .check import check_workflow
from .context import CheckReport
from .loader import load_document, load_workflow, workflow_from_dict
from .registry import register_step_kind

__all__ = [
    "CheckReport",
    "check_workflow",
    "load_document",
    "load_workflow",
    "register_step_kind",
    "workflow_from_dict",
]
