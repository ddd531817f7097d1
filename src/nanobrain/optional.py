"""Optional packages: import one, or say which NanoBrain extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from .core.errors import NanoBrainError


class MissingExtra(NanoBrainError, ImportError):
    """An optional package is not installed; the message names the extra that installs it.

    Also an `ImportError`, so code that already falls back on a missing import still does.
    """


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or raise MissingExtra: "`purpose` needs the `pkg` package: pip install ...".

    `purpose` names what the user asked for (for example "a PostgreSQL database URL").
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or module).split(".")[0]
        error = MissingExtra(f"{purpose} needs the `{missing}` package: pip install 'nanobrain[{extra}]'")
        error.name = missing
        raise error from None


__all__ = ["MissingExtra", "require"]
