"""The JSON Schema of workflow documents, for editors (`nanobrain schema`)."""

from __future__ import annotations

from typing import Any

from .models import WorkflowConfig
from .registry import all_step_kinds


def json_schema() -> dict[str, Any]:
    """The workflow document schema; `steps` accepts every registered step kind."""
    from . import loader  # noqa: F401  (registers the built-in kinds)

    schema = WorkflowConfig.model_json_schema(by_alias=True)
    defs = schema.setdefault("$defs", {})
    variants = []
    for kind in all_step_kinds().values():
        sub = kind.model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
        for def_name, definition in sub.pop("$defs", {}).items():
            # Two different models of one name would overwrite each other, and which one wins
            # would depend on import order: refuse it, so the schema stays one thing.
            if defs.get(def_name, definition) != definition:
                raise ValueError(f"two different config models are named {def_name!r}; rename one")
            defs[def_name] = definition
        name = kind.model.__name__
        defs[name] = sub
        variants.append({"$ref": f"#/$defs/{name}"})
    schema["properties"]["steps"]["additionalProperties"] = {"anyOf": variants}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "NanoBrain workflow"
    return schema
