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
MERGE_TAG = "tag:yaml.org,2002:merge"


class Source:
    """A parsed document: its data, its file name, the line of every node in it, and the problems
    that parsing found without stopping (duplicate keys: the last one wins, like YAML loaders do)."""

    def __init__(
        self, data: Any, file: str | None, lines: dict[Location, int], problems: list[Problem] | None = None
    ) -> None:
        self.data = data
        self.file = file
        self.lines = lines
        self.problems = problems if problems is not None else []

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
    source = Source(data, file, {})
    if node is not None:
        _index(node, (), source)
    return source


def read(path: str | os.PathLike[str]) -> Source:
    """Read and parse a YAML file (ConfigError naming the file when it cannot be read or parsed)."""
    return parse(read_text(path), str(path))


def read_text(path: str | os.PathLike[str]) -> str:
    """The text of a YAML file; a missing, unreadable or non-UTF-8 file is a ConfigError naming it."""
    file = str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem("", "file not found", file=file)], subject=file) from None
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read file: {exc.strerror or exc}", file=file)], subject=file) from None
    except UnicodeDecodeError as exc:
        raw = exc.object if isinstance(exc.object, bytes) else b""
        line = raw.count(b"\n", 0, exc.start) + 1
        message = (
            f"not UTF-8 text: byte 0x{raw[exc.start]:02x} on line {line} is not valid UTF-8 (save the file as UTF-8)"
            if exc.start < len(raw)
            else "not UTF-8 text (save the file as UTF-8)"
        )
        raise ConfigError([Problem("", message, file=file, line=line)], subject=file) from None


def _index(node: yaml.Node, location: Location, source: Source) -> None:
    """Record the line of every key and item, and report keys defined twice in one mapping."""
    lines = source.lines
    lines.setdefault(location, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        first_lines: dict[tuple[str, Any], int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            child = (*location, key)
            line = key_node.start_mark.line + 1
            identity = (key_node.tag, key)
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != MERGE_TAG:
                if identity in first_lines:
                    where, first = dotted(child), first_lines[identity]
                    message = f"duplicate key (first defined on line {first})"
                    source.problems.append(Problem(where, message, file=source.file, line=line))
                    # The last definition wins: forget the lines of the one it replaces.
                    for known in [loc for loc in lines if loc[: len(child)] == child]:
                        del lines[known]
                else:
                    first_lines[identity] = line
            lines[child] = line
            _index(value_node, child, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*location, i), source)


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
