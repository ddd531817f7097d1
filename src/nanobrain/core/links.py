"""Links carry values from an output unit to an input unit.

Endpoints are written `step.unit`; the workflow's own inputs and outputs are `inputs.NAME`
and `outputs.NAME`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

RESERVED_ENDPOINTS = ("inputs", "outputs")

#: How several links into one step input combine (`fan_in=`): `merge` fires the step once per
#: arriving value; `collect` waits for one value from every collecting link and delivers them as
#: one list (in link order); `collect_dict` delivers them as a dict keyed by source step.
FAN_IN_MODES = ("merge", "collect", "collect_dict")
COLLECTING = ("collect", "collect_dict")


def parse_endpoint(endpoint: str) -> tuple[str, str]:
    """Split `step.unit` into its two names; ValueError if the text is not of that form."""
    step, sep, unit = endpoint.partition(".")
    if not sep or not step or not unit or "." in unit:
        raise ValueError(f"link endpoint {endpoint!r} must look like 'step.unit' (or 'inputs.x' / 'outputs.y')")
    return step, unit


class Link:
    """A direct link: every value set on `source` is set on `target`.

    `max_iterations` bounds how many values the link carries in one run; a link that closes a
    cycle must have one. `fan_in` says how this link combines with other links into the same
    step input (see `FAN_IN_MODES`); it must be given when two or more links feed one input.
    """

    kind = "direct"
    __slots__ = ("fan_in", "max_iterations", "name", "source", "target")

    def __init__(
        self, source: str, target: str, *, max_iterations: int | None = None, fan_in: str | None = None
    ) -> None:
        self.source = source
        self.target = target
        parse_endpoint(source)
        parse_endpoint(target)
        if max_iterations is not None and max_iterations < 1:
            raise ValueError(f"link {source} -> {target}: max_iterations must be at least 1")
        if fan_in is not None and fan_in not in FAN_IN_MODES:
            raise ValueError(
                f"link {source} -> {target}: fan_in must be one of {', '.join(FAN_IN_MODES)}, got {fan_in!r}"
            )
        self.max_iterations = max_iterations
        self.fan_in = fan_in
        self.name = f"{source} -> {target}"

    #: Returned by `carry` when the value must not travel.
    SKIP: Any = object()

    def carry(self, value: Any) -> Any:
        """The value to deliver, or `Link.SKIP`."""
        return value

    @property
    def maxsize(self) -> int | None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r} -> {self.target!r})"


class TransformLink(Link):
    """Applies `transform(value)` on the way."""

    kind = "transform"
    __slots__ = ("transform",)

    def __init__(self, source: str, target: str, transform: Callable[[Any], Any], **kwargs: Any) -> None:
        if not callable(transform):
            raise TypeError(f"link {source} -> {target}: transform must be callable")
        super().__init__(source, target, **kwargs)
        self.transform = transform

    def carry(self, value: Any) -> Any:
        return self.transform(value)


class ConditionalLink(Link):
    """Carries a value only when `when(value)` is true; several of them make a router."""

    kind = "conditional"
    __slots__ = ("transform", "when")

    def __init__(
        self,
        source: str,
        target: str,
        when: Callable[[Any], bool],
        *,
        transform: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not callable(when):
            raise TypeError(f"link {source} -> {target}: 'when' must be callable")
        super().__init__(source, target, **kwargs)
        self.when = when
        self.transform = transform

    def carry(self, value: Any) -> Any:
        if not self.when(value):
            return Link.SKIP
        return value if self.transform is None else self.transform(value)


class QueueLink(Link):
    """A bounded buffer: the producer waits while `maxsize` values are not yet taken by the target step."""

    kind = "queue"
    __slots__ = ("_maxsize",)

    def __init__(self, source: str, target: str, *, maxsize: int = 64, **kwargs: Any) -> None:
        if maxsize < 1:
            raise ValueError(f"link {source} -> {target}: maxsize must be at least 1")
        super().__init__(source, target, **kwargs)
        self._maxsize = maxsize

    @property
    def maxsize(self) -> int | None:
        return self._maxsize
