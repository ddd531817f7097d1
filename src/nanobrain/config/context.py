"""What step builders get: where problems go, how references import, what is shared while loading."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import Problem
from ..core.executors import Executor
from ..core.imports import ImportPolicy, NotImported, import_object
from .files import MAX_FILE_BYTES
from .models import ExecutorConfig
from .yaml_source import Location, Source


@dataclass
class BuildContext:
    """What builders need: where problems go, where relative files are, shared executors."""

    source: Source
    base_dir: Path
    problems: list[Problem] = field(default_factory=list)
    executors: dict[str, Executor] = field(default_factory=dict)
    named_executors: dict[str, ExecutorConfig] = field(default_factory=dict)
    location: Location = ()
    files: tuple[str, ...] = ()
    #: Key-value stores opened for persistent units, by URL (units naming one URL share it).
    stores: dict[str, Any] = field(default_factory=dict)
    #: How references import (allow-list, search folders, whether user code may run).
    policy: ImportPolicy = field(default_factory=ImportPolicy.create)
    #: Folders that nested `file:` workflows must be in (empty: anywhere, for documents built from dicts).
    roots: tuple[Path, ...] = ()
    max_bytes: int = MAX_FILE_BYTES
    #: Values taken from the environment -> their `${VAR}` reference (shared by nested documents).
    secrets: dict[str, str] = field(default_factory=dict)
    #: References located but not imported (a check that runs no user code).
    deferred: list[str] = field(default_factory=list)
    #: How many workflows enclose the one being built.
    depth: int = 0

    def problem(self, location: Location, message: str) -> None:
        self.problems.append(self.source.problem((*self.location, *location), message))

    def resolve(self, reference: str, location: Location, what: str = "object") -> Any:
        """Import `package.module:attribute`; a failure becomes a problem (returns None).

        When the policy runs no user code, a reference that was found returns None too, and is
        remembered in `deferred`.
        """
        try:
            return import_object(reference, policy=self.policy)
        except NotImported as exc:
            self.deferred.append(exc.reference)
            return None
        except ValueError as exc:
            self.problem(location, f"{exc} (expected {what} as 'package.module:attribute')")
            return None

    def callable(self, reference: str, location: Location, what: str) -> Callable[..., Any] | None:
        target = self.resolve(reference, location, what)
        if target is not None and not callable(target):
            self.problem(location, f"{reference!r} is not callable (expected {what})")
            return None
        return target

    def child(self, source: Source, base_dir: Path, location: Location, file: str | None = None) -> BuildContext:
        """The context of a nested workflow: same problems, executors, policy and secrets."""
        return BuildContext(
            source,
            base_dir,
            problems=self.problems,
            executors=self.executors,
            named_executors=dict(self.named_executors),
            location=location,
            files=(*self.files, file) if file else self.files,
            policy=self.policy,
            roots=self.roots,
            max_bytes=self.max_bytes,
            secrets=self.secrets,
            deferred=self.deferred,
            depth=self.depth + 1,
        )


@dataclass(frozen=True)
class CheckReport:
    """What `check_workflow` found valid without running user code."""

    name: str
    steps: int
    inputs: int
    outputs: int
    #: References whose module was found but not imported (attributes are checked only by importing).
    located: tuple[str, ...]
