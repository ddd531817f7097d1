"""Resolve user code referenced as `package.module:attribute`, like uvicorn does."""

from __future__ import annotations

import importlib
from typing import Any


def import_object(reference: str) -> Any:
    """Import `package.module:attribute` (the attribute may be dotted). Raises ValueError if it cannot."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{reference!r} is not a reference of the form 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return target
