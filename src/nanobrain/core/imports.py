"""Resolve user code referenced as `package.module:attribute`, like uvicorn does, but safely.

A workflow file is code: its references import modules and call what they name. Three rules
keep that from happening by surprise:

- The working directory never shadows the standard library or installed packages. A module
  that the normal import system cannot find is looked for in the `search_path` folders (the
  config's folder, then the working directory); the folder where it is found is *appended* to
  `sys.path`, after everything installed, so that the module's own imports of its neighbours work.
- An allow-list (`NANOBRAIN_ALLOWED_MODULES`, or `allowed_modules` given to the loader) limits
  which modules a reference may name. It is checked for every reference, for every module that
  an attribute path walks through (`allowed.mod:os.system` is refused), and for references that
  steps resolve themselves while being built (through `import_policy`).
- A check that must not run user code (`nanobrain validate`) locates modules with the import
  system's finders, which read no module code; see `locate_module`.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import pkgutil
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ALLOWED_MODULES_ENV = "NANOBRAIN_ALLOWED_MODULES"
#: Allowed even under an allow-list: NanoBrain's ready workflows (the bundled chat), which are
#: part of the installed tool like its step kinds. The rest of `nanobrain` must be listed.
ALWAYS_ALLOWED = ("nanobrain.workflows",)

_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class NotImported(ValueError):
    """A reference was located but, by policy, not imported (a check that runs no user code)."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        super().__init__(f"{reference!r} was located, not imported")


@dataclass(frozen=True)
class ImportPolicy:
    """How references resolve: extra folders for modules found nowhere else, an allow-list of
    module prefixes (None: any module), and whether modules outside NanoBrain may be imported."""

    search_path: tuple[Path, ...] = ()
    allowed: tuple[str, ...] | None = None
    execute: bool = True

    @classmethod
    def create(
        cls,
        *,
        search_path: Sequence[str | os.PathLike[str]] = (),
        allowed_modules: Sequence[str] | None = None,
        execute: bool = True,
    ) -> ImportPolicy:
        """The policy for one load: `allowed_modules` and the environment's allow-list both apply."""
        allowed = allowed_from_env()
        if allowed_modules is not None:
            given = tuple(_prefix(p) for p in allowed_modules if p.strip())
            # Both lists apply: a name must be allowed by each, so keep the narrower of each pair.
            allowed = given if allowed is None else _intersect(given, allowed)
        return cls(tuple(Path(p) for p in search_path), allowed, execute)


def allowed_from_env() -> tuple[str, ...] | None:
    """The prefixes in NANOBRAIN_ALLOWED_MODULES (comma or space separated); None when it is unset.

    Set but empty means nothing outside NanoBrain's ready workflows may be imported.
    """
    raw = os.environ.get(ALLOWED_MODULES_ENV)
    if raw is None:
        return None
    return tuple(_prefix(part) for part in re.split(r"[,\s]+", raw) if part)


def _intersect(first: Sequence[str], second: Sequence[str]) -> tuple[str, ...]:
    narrower = {a for a in first for b in second if _covers(b, a)}
    narrower |= {b for a in first for b in second if _covers(a, b)}
    return tuple(sorted(narrower))


def _covers(prefix: str, name: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _prefix(text: str) -> str:
    return text.strip().rstrip(".")


def module_allowed(name: str, allowed: Sequence[str] | None) -> bool:
    """Whether module `name` is covered by a prefix (`myapp` covers `myapp` and `myapp.x`, not `myapps`)."""
    if allowed is None:
        return True
    return any(_covers(p, name) for p in (*allowed, *ALWAYS_ALLOWED))


_active: ContextVar[ImportPolicy | None] = ContextVar("nanobrain_import_policy", default=None)


@contextmanager
def import_policy(policy: ImportPolicy) -> Iterator[None]:
    """Apply `policy` to every `import_object` call made meanwhile (steps that resolve their own options)."""
    token = _active.set(policy)
    try:
        yield
    finally:
        _active.reset(token)


def split_reference(reference: str) -> tuple[str, str]:
    """`package.module:attribute` -> (module, attribute); ValueError when it is not of that form."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{reference!r} is not a reference of the form 'package.module:attribute'")
    if not _MODULE_NAME.fullmatch(module_name):
        raise ValueError(f"{module_name!r} is not a module name (expected dotted names like 'package.module')")
    if not all(part.isidentifier() for part in attribute.split(".")):
        raise ValueError(f"{attribute!r} is not an attribute name (expected dotted names like 'function')")
    return module_name, attribute


def _check_allowed(module_name: str, policy: ImportPolicy) -> None:
    if not module_allowed(module_name, policy.allowed):
        raise ValueError(
            f"module {module_name!r} is not in the allow-list of importable modules "
            f"({ALLOWED_MODULES_ENV}: {', '.join(policy.allowed or ()) or 'empty'})"
        )


def _is_own(module_name: str) -> bool:
    return module_name == "nanobrain" or module_name.startswith("nanobrain.")


def import_object(reference: str, *, policy: ImportPolicy | None = None) -> Any:
    """Import `package.module:attribute` (the attribute may be dotted). Raises ValueError if it cannot.

    Without `policy`, the one set by `import_policy` applies, else the environment's allow-list.
    """
    policy = policy or _active.get() or ImportPolicy.create()
    module_name, attribute = split_reference(reference)
    _check_allowed(module_name, policy)
    if policy.allowed is not None and any(part.startswith("__") for part in attribute.split(".")):
        # `allowed.mod:f.__class__.__base__...` reaches anything; no real reference needs a dunder.
        raise ValueError(f"{attribute!r}: names starting with '__' are not allowed under an allow-list")
    if not policy.execute and not _is_own(module_name):
        locate_module(module_name, policy.search_path)
        raise NotImported(reference)
    module = _import(module_name, policy.search_path)
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except Exception:  # AttributeError, or whatever a module's __getattr__ raises
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r}") from None
        if isinstance(target, ModuleType):
            # `allowed.module:os.system` must not reach a module the allow-list leaves out.
            _check_allowed(target.__name__, policy)
    return target


def _import(module_name: str, search_path: Sequence[Path]) -> ModuleType:
    top = module_name.partition(".")[0]
    if _find_top(top) is None:
        for folder in search_path:
            if importlib.machinery.PathFinder.find_spec(top, [str(folder)]) is not None:
                # Appended, never inserted: it cannot shadow anything installed.
                if str(folder) not in sys.path:
                    sys.path.append(str(folder))
                importlib.invalidate_caches()
                break
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:  # the module itself failed (SyntaxError, an exception at import time, ...)
        raise ValueError(f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}") from None


def _find_top(name: str) -> importlib.machinery.ModuleSpec | None:
    if name in sys.modules:
        return getattr(sys.modules[name], "__spec__", None) or importlib.machinery.ModuleSpec(name, None)
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def _find_in(name: str, locations: Sequence[str]) -> importlib.machinery.ModuleSpec | None:
    """The spec of module `name` in `locations`, asking each folder's finder directly.

    (PathFinder would build a namespace package's path from its parent package, which must
    then be imported; the folders' own finders need nothing imported.)
    """
    portions: list[str] = []
    for location in locations:
        finder = pkgutil.get_importer(location)
        spec = finder.find_spec(name) if finder is not None and hasattr(finder, "find_spec") else None
        if spec is None:
            continue
        if spec.loader is not None:
            return spec
        portions.extend(spec.submodule_search_locations or ())  # a namespace package's portion
    if not portions:
        return None
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = portions
    return spec


def locate_module(module_name: str, search_path: Sequence[Path] = ()) -> str:
    """Where module `module_name` is, found without running any of its code (nor its packages').

    Returns the file (or folder, for a namespace package). Raises ValueError when it is not found.
    Attributes cannot be checked this way: only importing a module tells what it defines.
    """
    parts = module_name.split(".")
    spec = _find_top(parts[0]) or _find_in(parts[0], [str(folder) for folder in search_path])
    for i in range(1, len(parts)):
        if spec is None:
            break
        parent = ".".join(parts[:i])
        loaded = sys.modules.get(parent)
        locations = getattr(loaded, "__path__", None) if loaded is not None else spec.submodule_search_locations
        if locations is None:
            raise ValueError(f"cannot find module {module_name!r}: {parent!r} is not a package")
        name = ".".join(parts[: i + 1])
        spec = sys.modules[name].__spec__ if name in sys.modules else None
        spec = spec or _find_in(name, list(locations))
    if spec is None:
        raise ValueError(f"cannot find module {module_name!r}")
    if spec.origin not in (None, "namespace"):
        return str(spec.origin)
    return ", ".join(spec.submodule_search_locations or ()) or module_name
