"""Configuration: pydantic models are the schema; YAML documents load into the same objects
that the Python constructors build."""

from .loader import load_document, load_workflow, workflow_from_dict
from .registry import register_step_kind

__all__ = ["load_document", "load_workflow", "register_step_kind", "workflow_from_dict"]
