"""YAML parsing that remembers where things are (for error messages) and expands `${ENV}`."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import ConfigError, Problem

Location = tuple[str | int, ...]


class Source:
    """A parsed document: its data, its file name, and the line of every node in it."""

    def __init__(self, data: Any, file: str | None, lines: dict[Location, int]) -> None:
        self.data = data
        self.file = file
        self.lines = lines

    def line(self, location: Location) -> int | None:
        """The line of `location`, or of its nearest parent that has one."""
        loc = tuple(location)
        while True:
            if loc in self.lines:
                return self.lines[loc]
            if not loc:
                return None
            loc = loc[:-1]

    def problem(self, location: Location, message: str) -> Problem:
        return Problem(dotted(location), message, file=self.file, line=self.line(location))


def dotted(location: Location) -> str:
    """`('steps', 'upper', 'links', 0)` -> `steps.upper.links[0]`."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def parse(text: str, file: str | None = None) -> Source:
    """Parse YAML safely, keeping the line of every mapping key and sequence item."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        detail = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            [Problem("", f"YAML syntax error: {detail}", file=file, line=line)], subject=file or "document"
        ) from None
    lines: dict[Location, int] = {}
    if node is not None:
        _index(node, (), lines)
    return Source(data, file, lines)


def read(path: str | os.PathLike[str]) -> Source:
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem("", "file not found", file=file)], subject=file) from None
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read file: {exc.strerror or exc}", file=file)], subject=file) from None
    return parse(text, file)


def _index(node: yaml.Node, location: Location, lines: dict[Location, int]) -> None:
    lines.setdefault(location, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            child = (*location, key)
            lines[child] = key_node.start_mark.line + 1
            _index(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*location, i), lines)


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(data: Any, source: Source, problems: list[Problem], location: Location = ()) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string; a missing VAR is a problem."""
    if isinstance(data, str):
        if "${" not in data:
            return data

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name)
            if value is None:
                if default is None:
                    problems.append(
                        source.problem(location, f"environment variable {name} is not set (use ${{{name}:-default}})")
                    )
                    return ""
                return default
            return value

        return _ENV.sub(substitute, data)
    if isinstance(data, Mapping):
        return {k: expand_env(v, source, problems, (*location, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, source, problems, (*location, i)) for i, v in enumerate(data)]
    return data
