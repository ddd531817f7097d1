"""Load workflows from YAML (or dicts) into the same objects the Python constructors build.

Every problem found is collected and reported at once, each with the file, the line where
possible, the path inside the document (`steps.summarize.timeout`) and what was expected.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..core.data_units import MISSING, DataUnit, FileUnit, StreamUnit, StringUnit
from ..core.errors import ConfigError, Problem
from ..core.executors import EXECUTOR_KINDS, Executor
from ..core.imports import ImportPolicy, NotImported, import_policy
from ..core.links import ConditionalLink, Link, QueueLink, TransformLink
from ..core.resources import Resources, parse_memory
from ..core.steps import FunctionStep, Step
from ..core.triggers import TRIGGER_KINDS, Condition, Interval, Trigger
from ..core.typing_utils import parse_type
from ..core.workflow import Workflow
from . import yaml_source
from .context import BuildContext
from .files import MAX_FILE_BYTES, special_file_problem
from .models import (
    ClassStepConfig,
    ExecutorConfig,
    FunctionStepConfig,
    LinkConfig,
    ResourcesConfig,
    StepConfig,
    TriggerConfig,
    UnitConfig,
    WorkflowConfig,
    WorkflowStepConfig,
)
from .problems import caused_by, describe, fed_by, locate, redact
from .registry import StepKind, all_step_kinds, register_step_kind, step_kind
from .yaml_source import Location, Source

__all__ = [
    "BuildContext",
    "StepBuild",
    "build_step",
    "load_document",
    "load_workflow",
    "step_options",
    "workflow_from_dict",
]

ALLOWED_DIRS_ENV = "NANOBRAIN_ALLOWED_DIRS"
"""More folders that nested `file:` workflows may be in (separated like PATH)."""

MAX_NESTING = 32
"""How deep workflows may nest (inline or in files): building them recurses, so this bounds the stack."""

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


# -- entry points -------------------------------------------------------------------------
def load_document(path: str | os.PathLike[str]) -> Source:
    """Read and parse a YAML file, keeping line numbers."""
    return yaml_source.read(path)


def load_workflow(
    path: str | os.PathLike[str],
    *,
    allowed_modules: Sequence[str] | None = None,
    allowed_dirs: Sequence[str | os.PathLike[str]] = (),
    max_bytes: int = MAX_FILE_BYTES,
) -> Workflow:
    """Load a workflow from a YAML file. Raises ConfigError listing every problem.

    A workflow file is code: its references import modules and call them. `package.module:attr`
    resolves through the installed packages first; a module found nowhere else is looked for in
    the file's folder, then the working directory (appended to `sys.path`, so they never shadow
    the standard library or an installed package). `allowed_modules` (and the environment's
    NANOBRAIN_ALLOWED_MODULES) limit which modules may be imported. Nested `file:` workflows must
    be in the file's folder, in `allowed_dirs` or in NANOBRAIN_ALLOWED_DIRS.
    """
    ctx = _file_context(path, allowed_modules, allowed_dirs, max_bytes, execute=True)
    workflow = _build_document(ctx)
    # Recorded with durable runs, so that a later process can load the workflow to resume them.
    workflow.source = str(Path(path).resolve())
    return workflow


def workflow_from_dict(
    data: dict[str, Any], *, base_dir: str | os.PathLike[str] = ".", allowed_modules: Sequence[str] | None = None
) -> Workflow:
    """Build a workflow from an already parsed document (no line numbers)."""
    source = Source(data, None, {})
    policy = ImportPolicy.create(search_path=(Path(base_dir),), allowed_modules=allowed_modules)
    ctx = BuildContext(source, Path(base_dir), policy=policy, roots=(Path(base_dir).resolve(),))
    problem = _depth_problem(data)
    if problem is not None:
        raise ConfigError([problem], subject="workflow document")
    return _build_document(ctx)


def _file_context(
    path: str | os.PathLike[str],
    allowed_modules: Sequence[str] | None,
    allowed_dirs: Sequence[str | os.PathLike[str]],
    max_bytes: int,
    *,
    execute: bool,
) -> BuildContext:
    source = yaml_source.read(path, max_bytes)
    resolved = Path(path).resolve()
    folder = resolved.parent
    # NanoBrain's own documents (the bundled chat) need no user folder at all.
    bundled = folder.is_relative_to(_PACKAGE_DIR)
    search_path = () if bundled else (folder, Path.cwd())
    policy = ImportPolicy.create(search_path=search_path, allowed_modules=allowed_modules, execute=execute)
    from_env = [d for d in os.environ.get(ALLOWED_DIRS_ENV, "").split(os.pathsep) if d.strip()]
    roots = (folder, *(Path(d).resolve() for d in (*allowed_dirs, *from_env)))
    return BuildContext(
        source, folder, problems=list(source.problems), files=(str(resolved),), policy=policy, roots=roots,
        max_bytes=max_bytes,
    )


def _depth_problem(data: Any) -> Problem | None:
    """A problem if `data` nests deeper than YAML documents may (recursive code below relies on it)."""
    work = [(data, 0)]
    while work:
        value, depth = work.pop()
        if depth > yaml_source.MAX_DEPTH:
            return Problem("", f"nested more than {yaml_source.MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            work.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            work.extend((v, depth + 1) for v in value)
    return None


def _build_document(ctx: BuildContext) -> Workflow:
    with import_policy(ctx.policy):
        workflow = _build_source(ctx)
    _raise_problems(ctx)
    assert workflow is not None
    return workflow


def _raise_problems(ctx: BuildContext) -> None:
    if ctx.problems:
        redact(ctx.problems, ctx.secrets)
        raise ConfigError(ctx.problems, subject=ctx.source.file or "workflow document")


def _expanded(ctx: BuildContext) -> tuple[Any, list[str]]:
    """The source's data with `${VAR}` expanded, and where variables were not set."""
    before = len(ctx.problems)
    data = yaml_source.expand_env(ctx.source.data, ctx.source, ctx.problems, ctx.location, ctx.secrets)
    return data, [problem.where for problem in ctx.problems[before:]]


def _build_source(ctx: BuildContext) -> Workflow | None:
    """Build a whole document (a file, or a dict): expand `${VAR}` once, then build."""
    data, unset = _expanded(ctx)
    before = len(ctx.problems)
    workflow = _build_expanded(data, ctx)
    if not unset:
        return workflow
    _drop_caused_by_unset(ctx, before, unset)
    return None


def _drop_caused_by_unset(ctx: BuildContext, first: int, unset: list[str]) -> None:
    # The rest of the document was checked too; drop what an unset variable (now "") causes by itself.
    ctx.problems[first:] = [
        problem
        for problem in ctx.problems[first:]
        if not any(problem.where == w or problem.where.startswith((w + ".", w + "[")) for w in unset)
    ]


def _build_expanded(data: Any, ctx: BuildContext) -> Workflow | None:
    config = _workflow_config(data, ctx)
    if config is None:
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
    unfed: set[str] = set()  # the inputs and outputs that a link which failed would have fed
    for i, link_config in enumerate(config.links):
        link = _link(link_config, ("links", i), ctx)
        if link is None:
            unfed.update(fed_by(link_config))
        else:
            links.append(link)
    # Check the graph even when some pieces failed, leaving out what those pieces would cause.
    workflow = Workflow(
        config.name,
        inputs=inputs,
        outputs=outputs,
        steps=steps,
        links=links,
        description=config.description,
        durable=config.durable or None,
    )
    link_index = {(lc.source, lc.target): i for i, lc in reversed(list(enumerate(config.links)))}
    for problem in workflow.problems():
        if not (caused_by(problem, broken) or problem.where in unfed):
            ctx.problems.append(locate(problem, link_index, ctx.source, ctx.location))
    workflow.executors = list(ctx.executors.values())
    workflow.stores = list(ctx.stores.values())
    return workflow if not ctx.problems else None


def _workflow_config(data: Any, ctx: BuildContext) -> WorkflowConfig | None:
    if not isinstance(data, dict):
        ctx.problem((), f"a workflow document must be a mapping, got {type(data).__name__}")
        return None
    config = _validate(WorkflowConfig, data, (), ctx)
    if config is None and isinstance(data.get("steps"), dict):
        # Still check each step on its own, so that one bad top-level field does not hide them.
        for name, raw_step in data["steps"].items():
            build_step(name, raw_step, ctx)
    return config


def _validate(model: type[BaseModel], data: Any, location: Location, ctx: BuildContext) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
            full = (*location, *loc)
            ctx.problem(full, describe(error, ctx.source.written((*ctx.location, *full))))
        return None


# -- pieces ---------------------------------------------------------------------------------
def _type(text: str | None, location: Location, ctx: BuildContext) -> Any:
    if text is None:
        return None
    try:
        return parse_type(text)
    except NotImported as exc:
        ctx.deferred.append(exc.reference)
        return None
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
        path = path if path.is_absolute() else ctx.base_dir / path
        # The unit reads what the file holds now: only a regular file (not /dev/zero, not a FIFO).
        problem = special_file_problem(path)
        if problem is not None:
            ctx.problem((*location, "path"), f"{decl.path!r}: {problem}")
            return DataUnit(name, type_)
        try:
            return FileUnit(name, type_, path=path, format=decl.format)
        except (OSError, ValueError) as exc:  # its current content does not parse, or cannot be read
            ctx.problem((*location, "path"), str(exc))
            return DataUnit(name, type_)
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
    from ..core.executors import DaskExecutor, InProcessExecutor, ProcessExecutor, ThreadExecutor

    capacity = _resources(config.capacity)
    if config.kind == "thread":
        return ThreadExecutor(config.max_workers, capacity=capacity)
    if config.kind == "process":
        return ProcessExecutor(config.max_workers, capacity=capacity)
    if config.kind == "dask":
        return DaskExecutor(
            config.address,
            n_workers=config.n_workers,
            threads_per_worker=config.threads_per_worker,
            processes=config.processes,
            capacity=capacity,
            no_workers_timeout=config.no_workers_timeout,
        )
    return InProcessExecutor(capacity=capacity)


def _resources(config: ResourcesConfig | None) -> Resources | None:
    return None if config is None else Resources(config.cpu, parse_memory(config.memory))


def step_options(config: StepConfig, location: Location, ctx: BuildContext) -> dict[str, Any]:
    """The options every step kind shares, built into engine objects."""
    options: dict[str, Any] = {
        "timeout": config.timeout,
        "concurrency": config.concurrency,
        "retry": config.retry.build(ctx, (*location, "retry")) if config.retry is not None else None,
        "executor": _executor(config.executor, (*location, "executor"), ctx),
        "trigger": _trigger(config.trigger, (*location, "trigger"), ctx),
    }
    if config.description:
        options["description"] = config.description
    if config.resources is not None:  # only when declared: step kinds that predate it keep working
        options["resources"] = _resources(config.resources)
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
        _check_valid_fields(kind, raw, name, location, ctx)
        return None
    step = _run_builder(kind.build, config, name, location, ctx)
    if step is not None and step.name != name:
        step = step.renamed(name)
    return step


def _run_builder(
    builder: Callable[[Any, StepBuild], Step | None], config: Any, name: str, location: Location, ctx: BuildContext
) -> Step | None:
    """Build a validated step config; None when that recorded problems."""
    before = len(ctx.problems)
    build = StepBuild(ctx, name, location)
    try:
        step = builder(config, build)
    except NotImported as exc:  # the step resolves a reference itself (class options): checked, not imported
        ctx.deferred.append(exc.reference)
        step = None
    except (TypeError, ValueError, ImportError) as exc:
        ctx.problem(location, f"cannot build step: {exc}")
        step = None
    if step is None and not build.options_checked:
        build.options(config)  # a builder that stopped early: its trigger, retry and executor still get checked
    if step is None or len(ctx.problems) > before:
        return None
    return step


def _check_valid_fields(kind: StepKind, raw: dict[str, Any], name: str, location: Location, ctx: BuildContext) -> None:
    """A step with invalid fields (already reported): build it from its other fields, so that their
    problems are reported too (a bad `timeout` must not hide a bad `function`). Nothing built is kept."""
    try:
        kind.model.model_validate(raw)
        return
    except ValidationError as exc:
        invalid = {error["loc"][0] for error in exc.errors() if error["loc"]}
    rest = {field: value for field, value in raw.items() if field not in invalid}
    if rest == raw:
        return
    try:
        config = kind.model.model_validate(rest)
    except ValidationError:  # a required field is itself what is wrong: nothing more can be built
        return
    _run_builder(kind.build, config, name, location, ctx)


class StepBuild:
    """Passed to step builders (`register_step_kind`): the step's name and location, and the shared context."""

    def __init__(self, ctx: BuildContext, name: str, location: Location) -> None:
        self.ctx = ctx
        self.name = name
        self.location = location
        self.options_checked = False

    def problem(self, field_name: str, message: str) -> None:
        self.ctx.problem((*self.location, field_name), message)

    def callable(self, reference: str, field_name: str, what: str) -> Callable[..., Any] | None:
        return self.ctx.callable(reference, (*self.location, field_name), what)

    def options(self, config: StepConfig) -> dict[str, Any]:
        self.options_checked = True
        return step_options(config, self.location, self.ctx)

    def nested(
        self,
        raw: Any,
        location: Location,
        source: Source | None = None,
        base_dir: Path | None = None,
        file: str | None = None,
    ) -> Workflow | None:
        """Build (or, when no user code may run, check) a nested workflow: inline `raw`, or a file's `source`."""
        ctx = self.ctx
        if source is None:
            child = ctx.child(ctx.source, base_dir or ctx.base_dir, location)
            if not ctx.policy.execute:
                from .check import check_inline

                check_inline(raw, child)
                return None
            return _build_expanded(raw, child)
        child = ctx.child(source, base_dir or ctx.base_dir, (), file)
        if not ctx.policy.execute:
            from .check import check_source

            check_source(child)
            return None
        return _build_source(child)


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
    if build.ctx.depth >= MAX_NESTING:
        build.problem("kind", f"workflows are nested more than {MAX_NESTING} levels deep")
        return None
    if config.workflow is not None:
        workflow = build.nested(config.workflow, (*build.location, "workflow"))
    else:
        assert config.file is not None
        source = _nested_source(config.file, build)
        if source is None:
            return None
        path = Path(source.file or "")
        workflow = build.nested(source.data, (), source=source, base_dir=path.parent, file=str(path))
    if workflow is None or not build.ctx.policy.execute:  # when checking, nothing is built
        return None
    return _configured(workflow, build.options(config))


NESTED_SUFFIXES = (".yaml", ".yml")


def _nested_source(name: str, build: StepBuild) -> Source | None:
    """Read and parse a nested workflow file, refusing anything that is not one at the first problem.

    Problems with the file itself never show its content: a nested file may be anything on disk.
    """
    ctx = build.ctx
    try:
        path = (ctx.base_dir / name).resolve()  # symbolic links resolved: where the file really is
    except (OSError, ValueError) as exc:  # a NUL byte in the name, a loop of links, ...
        build.problem("file", f"{name!r} is not a usable file name: {exc}")
        return None
    if path.suffix.lower() not in NESTED_SUFFIXES:
        build.problem("file", f"{name!r} is not a workflow file (nested workflows are .yaml or .yml files)")
        return None
    if ctx.roots and not any(path.is_relative_to(root) for root in ctx.roots):
        folders = ", ".join(str(root) for root in ctx.roots)
        message = f"{name!r} is outside the workflow's folder ({folders}); allow its folder in NANOBRAIN_ALLOWED_DIRS"
        build.problem("file", message)
        return None
    if str(path) in ctx.files:
        build.problem("file", f"{name!r} includes itself (directly or through other files)")
        return None
    try:
        source = yaml_source.read(path, ctx.max_bytes)
    except ConfigError as exc:  # unreadable, too large, not UTF-8, not YAML: one problem, where the file is named
        problem = exc.problems[0]
        at = f" (line {problem.line})" if problem.line and problem.file else ""
        build.problem("file", f"cannot read nested workflow {name!r}: {problem.message}{at}")
        return None
    if not isinstance(source.data, dict):
        kind = type(source.data).__name__
        build.problem("file", f"{name!r} is not a workflow document (a mapping with name, steps and links; got {kind})")
        return None
    ctx.problems.extend(source.problems)
    return source


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
                config.source,
                config.target,
                when,
                transform=transform,
                max_iterations=config.max_iterations,
                fan_in=config.fan_in,
            )
        if transform is not None:
            return TransformLink(
                config.source, config.target, transform, max_iterations=config.max_iterations, fan_in=config.fan_in
            )
        if config.maxsize is not None:
            return QueueLink(
                config.source,
                config.target,
                maxsize=config.maxsize,
                max_iterations=config.max_iterations,
                fan_in=config.fan_in,
            )
        if config.transform or config.when:
            return None  # its reference did not resolve; the problem is already recorded
        return Link(config.source, config.target, max_iterations=config.max_iterations, fan_in=config.fan_in)
    except ValueError as exc:
        ctx.problem(location, str(exc))
        return None
