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
        raise missing_extra(exc, extra=extra, purpose=purpose) from None


def missing_extra(error: ModuleNotFoundError, *, extra: str, purpose: str) -> MissingExtra:
    """The MissingExtra to raise for `error`, caught around a module's top-level imports:

        try:
            from prometheus_client import Counter
        except ModuleNotFoundError as exc:
            raise missing_extra(exc, extra="observability", purpose="metrics") from None
    """
    missing = (error.name or "a package").split(".")[0]
    if missing == "nanobrain":  # our own module is missing: a bug or a broken install, not an extra
        raise error
    found = MissingExtra(f"{purpose} needs the `{missing}` package: pip install 'nanobrain[{extra}]'")
    found.name = missing
    return found


__all__ = ["MissingExtra", "missing_extra", "require"]
