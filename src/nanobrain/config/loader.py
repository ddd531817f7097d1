"""Load workflows from YAML (or dicts) into the same objects the Python constructors build.

Every problem found is collected and reported at once, each with the file, the line where
possible, the path inside the document (`steps.summarize.timeout`) and what was expected.
"""

from __future__ import annotations

import builtins
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..core.data_units import MISSING, DataUnit, FileUnit, StreamUnit, StringUnit
from ..core.errors import ConfigError, Problem
from ..core.executors import EXECUTOR_KINDS, Executor
from ..core.imports import import_object
from ..core.links import ConditionalLink, Link, QueueLink, TransformLink
from ..core.retry import RetryPolicy
from ..core.steps import FunctionStep, Step
from ..core.triggers import TRIGGER_KINDS, Condition, Interval, Trigger
from ..core.typing_utils import parse_type
from ..core.workflow import Workflow
from . import yaml_source
from .models import (
    ClassStepConfig,
    ExecutorConfig,
    FunctionStepConfig,
    LinkConfig,
    RetryConfig,
    StepConfig,
    TriggerConfig,
    UnitConfig,
    WorkflowConfig,
    WorkflowStepConfig,
)
from .registry import all_step_kinds, register_step_kind, step_kind
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

    def problem(self, location: Location, message: str) -> None:
        self.problems.append(self.source.problem((*self.location, *location), message))

    def resolve(self, reference: str, location: Location, what: str = "object") -> Any:
        """Import `package.module:attribute`; a failure becomes a problem (returns None)."""
        try:
            return import_object(reference)
        except ValueError as exc:
            self.problem(location, f"{exc} (expected {what} as 'package.module:attribute')")
            return None

    def callable(self, reference: str, location: Location, what: str) -> Callable[..., Any] | None:
        target = self.resolve(reference, location, what)
        if target is not None and not callable(target):
            self.problem(location, f"{reference!r} is not callable (expected {what})")
            return None
        return target


# -- entry points -------------------------------------------------------------------------
def load_document(path: str | os.PathLike[str]) -> Source:
    """Read and parse a YAML file, keeping line numbers."""
    return yaml_source.read(path)


def load_workflow(path: str | os.PathLike[str]) -> Workflow:
    """Load a workflow from a YAML file. Raises ConfigError listing every problem.

    Like uvicorn, the current directory is put on `sys.path` so that `package.module:attr`
    references to the user's own code resolve when run from the project folder.
    """
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    source = yaml_source.read(path)
    return _build_document(source, Path(path).resolve().parent, files=(str(Path(path).resolve()),))


def workflow_from_dict(data: dict[str, Any], *, base_dir: str | os.PathLike[str] = ".") -> Workflow:
    """Build a workflow from an already parsed document (no line numbers)."""
    return _build_document(Source(data, None, {}), Path(base_dir))


def _build_document(source: Source, base_dir: Path, files: tuple[str, ...] = ()) -> Workflow:
    ctx = BuildContext(source, base_dir, problems=list(source.problems), files=files)
    workflow = _build_workflow(source.data, ctx)
    if ctx.problems or workflow is None:
        raise ConfigError(ctx.problems, subject=source.file or "workflow document")
    return workflow


def _build_workflow(raw: Any, ctx: BuildContext) -> Workflow | None:
    before = len(ctx.problems)
    data = yaml_source.expand_env(raw, ctx.source, ctx.problems, ctx.location)
    unset = [problem.where for problem in ctx.problems[before:]]
    workflow = _build_expanded(data, ctx)
    if not unset:
        return workflow
    # Check the rest of the document too, but drop what an unset variable (now "") causes by itself.
    first_other = before + len(unset)
    ctx.problems[first_other:] = [
        problem
        for problem in ctx.problems[first_other:]
        if not any(problem.where == w or problem.where.startswith((w + ".", w + "[")) for w in unset)
    ]
    return None


def _build_expanded(data: Any, ctx: BuildContext) -> Workflow | None:
    if not isinstance(data, dict):
        ctx.problem((), f"a workflow document must be a mapping, got {type(data).__name__}")
        return None
    config = _validate(WorkflowConfig, data, (), ctx)
    if config is None:
        # Still check each step on its own, so that one bad top-level field does not hide them.
        if isinstance(data.get("steps"), dict):
            for name, raw_step in data["steps"].items():
                build_step(name, raw_step, ctx)
        return None
    ctx.named_executors.update(config.executors)
    inputs = {name: _unit(name, decl, ("inputs", name), ctx) for name, decl in config.inputs.items()}
    outputs = {name: _unit(name, decl, ("outputs", name), ctx) for name, decl in config.outputs.items()}
    steps: list[Step] = []
    broken: set[str] = set()  # steps that could not be built, or whose links could not
    for name, raw_step in config.steps.items():
        built = build_step(name, raw_step, ctx)
        if built is None:
            broken.add(name)
        else:
            steps.append(built)
    links: list[Link] = []
    for i, link_config in enumerate(config.links):
        link = _link(link_config, ("links", i), ctx)
        if link is None:
            broken.update(endpoint.partition(".")[0] for endpoint in (link_config.source, link_config.target))
        else:
            links.append(link)
    # Check the graph even when some pieces failed, leaving out what those pieces would cause.
    workflow = Workflow(
        config.name, inputs=inputs, outputs=outputs, steps=steps, links=links, description=config.description
    )
    for problem in workflow.problems():
        if not _caused_by(problem, broken):
            ctx.problems.append(_locate(problem, config.links, ctx))
    workflow.executors = list(ctx.executors.values())
    workflow.resources = list(ctx.stores.values())
    return workflow if not ctx.problems else None


def _caused_by(problem: Problem, broken: set[str]) -> bool:
    return any(
        f"'{name}'" in problem.message or problem.where.startswith(f"steps.{name}.") or f"{name}." in problem.where
        for name in broken
    )


def _validate(model: type[BaseModel], data: Any, location: Location, ctx: BuildContext) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
            ctx.problem((*location, *loc), _describe(error))
        return None


def _describe(error: Any) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field (check the spelling; `nanobrain schema` lists the fields)"
    value = error.get("input")
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return f"{message} (got {shown})"


_LINK_WHERE = re.compile(r"^links\[(.*) -> (.*)\]$")


def _locate(problem: Problem, links: list[LinkConfig], ctx: BuildContext) -> Problem:
    """Give a graph problem found by the engine the file and line of the config that caused it."""
    match = _LINK_WHERE.match(problem.where)
    location: Location
    if match:
        index = next(
            (i for i, lc in enumerate(links) if (lc.source, lc.target) == match.groups()),
            None,
        )
        location = ("links", index) if index is not None else ("links",)
    else:
        location = tuple(problem.where.split(".")[:2]) if problem.where else ()
    return ctx.source.problem((*ctx.location, *location), problem.message)


# -- pieces ---------------------------------------------------------------------------------
def _type(text: str | None, location: Location, ctx: BuildContext) -> Any:
    if text is None:
        return None
    try:
        return parse_type(text)
    except ValueError as exc:
        ctx.problem(location, str(exc))
        return None


def _unit(name: str, decl: Any, location: Location, ctx: BuildContext) -> DataUnit:
    if decl is None or isinstance(decl, str):
        return DataUnit(name, _type(decl, location, ctx))
    assert isinstance(decl, UnitConfig)
    type_ = _type(decl.type, (*location, "type"), ctx)
    default = decl.default if "default" in decl.model_fields_set else MISSING
    if decl.kind == "stream":
        return StreamUnit(name, type_, default=default, maxsize=decl.maxsize or 64)
    if decl.kind == "string":
        return StringUnit(name, default=default)
    if decl.kind == "file":
        if not decl.path:
            ctx.problem(location, "a file unit needs a path")
            return DataUnit(name, type_)
        path = Path(decl.path)
        return FileUnit(name, type_, path=path if path.is_absolute() else ctx.base_dir / path, format=decl.format)
    if decl.kind in ("persistent", "persistent_stream"):
        return _persistent_unit(name, type_, default, decl, location, ctx)
    return DataUnit(name, type_, default=default)


def _persistent_unit(
    name: str, type_: Any, default: Any, decl: UnitConfig, location: Location, ctx: BuildContext
) -> DataUnit:
    # Imported here: the storage drivers load only for workflows that declare such units.
    from ..core.errors import NanoBrainError
    from ..infrastructure.data.kv import open_store
    from ..infrastructure.data.persistent_units import PersistentStreamUnit, PersistentUnit

    broken = False
    if not decl.store:
        ctx.problem(location, "a persistent unit needs a store URL (sqlite+aiosqlite:///FILE, redis://HOST/DB, ...)")
        broken = True
    if not decl.key:
        ctx.problem(location, "a persistent unit needs a key (the name its value is stored under)")
        broken = True
    encryptor = None
    if decl.encrypted:
        from ..infrastructure.security.encryption import EncryptionError, Encryptor

        try:
            encryptor = Encryptor.from_env()
        except EncryptionError as exc:
            ctx.problem((*location, "encrypted"), str(exc))
            broken = True
    if broken or decl.store is None or decl.key is None:
        return DataUnit(name, type_)
    store = ctx.stores.get(decl.store)
    if store is None:
        try:
            store = open_store(decl.store, base_dir=ctx.base_dir)
        except (NanoBrainError, ImportError) as exc:
            ctx.problem((*location, "store"), str(exc))
            return DataUnit(name, type_)
        ctx.stores[decl.store] = store
    kind = PersistentUnit if decl.kind == "persistent" else PersistentStreamUnit
    return kind(name, type_, store=store, key=decl.key, default=default, encryptor=encryptor)


def _trigger(decl: Any, location: Location, ctx: BuildContext) -> Trigger | None:
    if decl is None:
        return None
    if isinstance(decl, str):
        return TRIGGER_KINDS[decl]()
    assert isinstance(decl, TriggerConfig)
    if decl.kind in ("interval", "timer"):
        if decl.seconds is None:
            ctx.problem(location, "an interval trigger needs seconds")
            return None
        return Interval(decl.seconds, count=decl.count, immediately=decl.immediately)
    if decl.kind == "condition":
        if not decl.predicate:
            ctx.problem(location, "a condition trigger needs a predicate (package.module:function)")
            return None
        predicate = ctx.callable(decl.predicate, (*location, "predicate"), "a predicate function")
        return Condition(predicate) if predicate else None
    return TRIGGER_KINDS[decl.kind]()


def _retry(config: RetryConfig | None, location: Location, ctx: BuildContext) -> RetryPolicy | None:
    if config is None:
        return None
    classes: list[type[BaseException]] = []
    for i, name in enumerate(config.retry_on):
        target = getattr(builtins, name, None) if ":" not in name else ctx.resolve(name, (*location, "retry_on", i))
        if isinstance(target, type) and issubclass(target, BaseException):
            classes.append(target)
        elif ":" not in name or target is not None:
            ctx.problem((*location, "retry_on", i), f"{name!r} is not an exception class")
    return RetryPolicy(
        attempts=config.attempts,
        initial=config.initial,
        multiplier=config.multiplier,
        max_wait=config.max_wait,
        jitter=config.jitter,
        retry_on=tuple(classes) or (Exception,),
    )


def _executor(decl: Any, location: Location, ctx: BuildContext) -> Executor | None:
    """One executor object per name and document, so steps share pools and clusters."""
    if decl is None:
        return None
    if isinstance(decl, str):
        key = decl
        config = ctx.named_executors.get(decl)
        if config is None:
            if decl not in EXECUTOR_KINDS:
                known = sorted({*EXECUTOR_KINDS, *ctx.named_executors})
                ctx.problem(location, f"unknown executor {decl!r} (known: {', '.join(known)})")
                return None
            config = ExecutorConfig.model_validate({"kind": decl})
    else:
        config = decl
        key = repr(config.model_dump())
    if key not in ctx.executors:
        ctx.executors[key] = _make_executor(config)
    return ctx.executors[key]


def _make_executor(config: ExecutorConfig) -> Executor:
    from ..core.executors import DaskExecutor, ProcessExecutor, ThreadExecutor

    if config.kind == "thread":
        return ThreadExecutor(config.max_workers)
    if config.kind == "process":
        return ProcessExecutor(config.max_workers)
    if config.kind == "dask":
        return DaskExecutor(
            config.address,
            n_workers=config.n_workers,
            threads_per_worker=config.threads_per_worker,
            processes=config.processes,
        )
    return EXECUTOR_KINDS["inprocess"]()


def step_options(config: StepConfig, location: Location, ctx: BuildContext) -> dict[str, Any]:
    """The options every step kind shares, built into engine objects."""
    options: dict[str, Any] = {
        "timeout": config.timeout,
        "concurrency": config.concurrency,
        "retry": _retry(config.retry, (*location, "retry"), ctx),
        "executor": _executor(config.executor, (*location, "executor"), ctx),
        "trigger": _trigger(config.trigger, (*location, "trigger"), ctx),
    }
    if config.description:
        options["description"] = config.description
    return options


def build_step(name: str, raw: Any, ctx: BuildContext, location: Location | None = None) -> Step | None:
    """Build the step declared by `raw` (a mapping with its `kind`), or record problems and return None.

    `location` is where `raw` is in the document (default `steps.NAME`); step kinds that declare
    steps inside them (the processors of a parallel step) build those with it too.
    """
    if location is None:
        location = ("steps", name)
    if not isinstance(raw, dict):
        ctx.problem(location, f"a step must be a mapping, got {type(raw).__name__}")
        return None
    kind_name = raw.get("kind", "function")
    kind = step_kind(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        known = ", ".join(sorted(all_step_kinds()))
        ctx.problem((*location, "kind"), f"unknown step kind {kind_name!r} (known: {known})")
        return None
    config = _validate(kind.model, raw, location, ctx)
    if config is None:
        return None
    before = len(ctx.problems)
    try:
        step = kind.build(config, StepBuild(ctx, name, location))
    except (TypeError, ValueError, ImportError) as exc:
        ctx.problem(location, f"cannot build step: {exc}")
        return None
    if step is None or len(ctx.problems) > before:
        return None
    if step.name != name:
        step = step.renamed(name)
    return step


class StepBuild:
    """Passed to step builders (`register_step_kind`): the step's name and location, and the shared context."""

    def __init__(self, ctx: BuildContext, name: str, location: Location) -> None:
        self.ctx = ctx
        self.name = name
        self.location = location

    def problem(self, field_name: str, message: str) -> None:
        self.ctx.problem((*self.location, field_name), message)

    def callable(self, reference: str, field_name: str, what: str) -> Callable[..., Any] | None:
        return self.ctx.callable(reference, (*self.location, field_name), what)

    def options(self, config: StepConfig) -> dict[str, Any]:
        return step_options(config, self.location, self.ctx)

    def nested(
        self,
        raw: Any,
        location: Location,
        source: Source | None = None,
        base_dir: Path | None = None,
        file: str | None = None,
    ) -> Workflow | None:
        ctx = self.ctx
        child = BuildContext(
            source or ctx.source,
            base_dir or ctx.base_dir,
            problems=ctx.problems,
            executors=ctx.executors,
            named_executors=dict(ctx.named_executors),
            location=location if source is None else (),
            files=(*ctx.files, file) if file else ctx.files,
        )
        return _build_workflow(raw, child)


# -- built-in step kinds ---------------------------------------------------------------------
def _build_function(config: FunctionStepConfig, build: StepBuild) -> Step | None:
    fn = build.callable(config.function, "function", "a function")
    if fn is None:
        return None
    if isinstance(fn, FunctionStep) and config.outputs is None:
        # A function decorated with @step: keep what the decorator declared, apply the config's options.
        return _configured(fn.renamed(build.name), build.options(config))
    if isinstance(fn, FunctionStep):
        fn = fn.fn
    return FunctionStep(fn, build.name, outputs=config.outputs, **build.options(config))


def _configured(step: Step, options: dict[str, Any]) -> Step:
    for option, value in options.items():
        if value is not None:
            setattr(step, option, value)
    return step


def _build_class(config: ClassStepConfig, build: StepBuild) -> Step | None:
    cls = build.callable(config.class_, "class", "a Step subclass")
    if cls is None:
        return None
    if not (isinstance(cls, type) and issubclass(cls, Step)):
        build.problem("class", f"{config.class_!r} is not a subclass of nanobrain.Step")
        return None
    step = _configured(cls(**config.options), build.options(config))
    step.name = build.name
    return step


def _build_nested(config: WorkflowStepConfig, build: StepBuild) -> Step | None:
    if (config.file is None) == (config.workflow is None):
        build.problem("file", "a workflow step needs exactly one of `file` or `workflow`")
        return None
    if config.workflow is not None:
        workflow = build.nested(config.workflow, (*build.location, "workflow"))
    else:
        assert config.file is not None
        path = (build.ctx.base_dir / config.file).resolve()
        if str(path) in build.ctx.files:
            build.problem("file", f"{config.file!r} includes itself (directly or through other files)")
            return None
        try:
            text = yaml_source.read_text(path)
        except ConfigError as exc:  # missing, unreadable, not UTF-8: say so where the file is named
            for problem in exc.problems:
                build.problem("file", f"cannot read nested workflow {config.file!r}: {problem.message}")
            return None
        try:
            source = yaml_source.parse(text, str(path))
        except ConfigError as exc:  # a syntax error: its line in the nested file says more
            build.ctx.problems.extend(exc.problems)
            return None
        build.ctx.problems.extend(source.problems)
        workflow = build.nested(source.data, (), source=source, base_dir=path.parent, file=str(path))
    if workflow is None:
        return None
    return _configured(workflow, build.options(config))


register_step_kind("function", FunctionStepConfig, _build_function)
register_step_kind("class", ClassStepConfig, _build_class)
register_step_kind("workflow", WorkflowStepConfig, _build_nested)


def _link(config: LinkConfig, location: Location, ctx: BuildContext) -> Link | None:
    transform = ctx.callable(config.transform, (*location, "transform"), "a function") if config.transform else None
    when = ctx.callable(config.when, (*location, "when"), "a predicate function") if config.when else None
    try:
        if when is not None:
            if config.maxsize is not None:
                ctx.problem(location, "a link is either conditional (when) or a queue (maxsize), not both")
                return None
            return ConditionalLink(
                config.source, config.target, when, transform=transform, max_iterations=config.max_iterations
            )
        if transform is not None:
            return TransformLink(config.source, config.target, transform, max_iterations=config.max_iterations)
        if config.maxsize is not None:
            return QueueLink(config.source, config.target, maxsize=config.maxsize, max_iterations=config.max_iterations)
        if config.transform or config.when:
            return None  # its reference did not resolve; the problem is already recorded
        return Link(config.source, config.target, max_iterations=config.max_iterations)
    except ValueError as exc:
        ctx.problem(location, str(exc))
        return None
