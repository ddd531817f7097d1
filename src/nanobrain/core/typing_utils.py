"""Type checking for data units: a fast path for plain classes, pydantic for the rest.

pydantic is imported only when a value needs it, so that `import nanobrain` stays light.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

from .errors import UnitTypeError

_PLAIN = (str, int, float, bool, bytes, list, dict, tuple, set, type(None))


def make_validator(unit: str, annotation: Any) -> Callable[[Any], Any] | None:
    """Return a function that validates (and may coerce) a value, or None for "anything goes"."""
    if annotation is None or annotation is Any or annotation is object:
        return None
    adapter: Any = None

    def slow(value: Any) -> Any:
        nonlocal adapter
        if adapter is None:
            from pydantic import TypeAdapter

            adapter = TypeAdapter(annotation)
        from pydantic import ValidationError

        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            detail = "; ".join(e["msg"] for e in exc.errors()[:3])
            raise UnitTypeError(unit, annotation, value, detail) from None

    if isinstance(annotation, type):
        exact = annotation

        def validate(value: Any) -> Any:
            # Fast path: the common case costs one type() call, no pydantic.
            if type(value) is exact:
                return value
            if exact is float and type(value) is int:
                return float(value)
            if isinstance(value, exact) and not (exact is int and type(value) is bool):
                return value
            return slow(value)

        return validate
    return slow


def type_name(annotation: Any) -> str:
    """A readable name for an annotation: `str`, `list[int]`, `mymod.Model`."""
    if annotation is None or annotation is Any:
        return "Any"
    if isinstance(annotation, type) and not typing.get_args(annotation):
        if annotation.__module__ == "builtins":
            return annotation.__qualname__
        return f"{annotation.__module__}.{annotation.__qualname__}"
    return repr(annotation).replace("typing.", "")


def is_compatible(source: Any, target: Any) -> bool:
    """Whether values of type `source` can flow into a unit of type `target`.

    Deliberately permissive where it cannot be sure: only a clear mismatch is reported.
    """
    if source in (None, Any, object) or target in (None, Any, object):
        return True
    if source == target:
        return True
    target_origin = typing.get_origin(target)
    if target_origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(is_compatible(source, arm) for arm in typing.get_args(target))
    source_origin = typing.get_origin(source)
    if source_origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return all(is_compatible(arm, target) for arm in typing.get_args(source))
    if typing.get_origin(source) is typing.Literal or typing.get_origin(target) is typing.Literal:
        return True
    src_cls = source_origin or source
    tgt_cls = target_origin or target
    if isinstance(src_cls, type) and isinstance(tgt_cls, type):
        if issubclass(src_cls, tgt_cls):
            if source_origin and target_origin:
                src_args, tgt_args = typing.get_args(source), typing.get_args(target)
                if len(src_args) == len(tgt_args):
                    return all(is_compatible(a, b) for a, b in zip(src_args, tgt_args, strict=True))
            return True
        # int flows into float, as pydantic and the type system allow.
        return src_cls is int and tgt_cls is float
    return True


_TYPE_NAMES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "bytes": bytes,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "set": set,
    "None": type(None),
    "Any": Any,
    "any": Any,
    "Optional": typing.Optional,
    "Union": typing.Union,
    "Literal": typing.Literal,
}


def parse_type(text: str) -> Any:
    """Parse a type written in config: `str`, `list[int]`, `dict[str, float] | None`, `pkg.mod:Model`.

    Raises ValueError with a readable message. No `eval`: the expression is walked as an AST.
    """
    import ast

    from .imports import import_object

    text = text.strip()
    if ":" in text and "[" not in text:
        return import_object(text)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ValueError(f"cannot parse type {text!r}") from None

    def build(node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            if node.id not in _TYPE_NAMES:
                raise ValueError(
                    f"unknown type {node.id!r} (use a builtin like str/int/list[str] or 'package.module:Class')"
                )
            return _TYPE_NAMES[node.id]
        if isinstance(node, ast.Constant):
            if node.value is None:
                return type(None)
            return node.value
        if isinstance(node, ast.Subscript):
            base = build(node.value)
            inner = node.slice
            args = tuple(build(e) for e in inner.elts) if isinstance(inner, ast.Tuple) else (build(inner),)
            return base[args if len(args) > 1 else args[0]]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return typing.Union[build(node.left), build(node.right)]  # noqa: UP007
        raise ValueError(f"cannot parse type {text!r}")

    return build(tree.body)
