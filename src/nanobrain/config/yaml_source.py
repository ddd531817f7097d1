"""YAML parsing that remembers where things are (for error messages) and expands `${ENV}`.

Parsing is bounded: nesting deeper than `MAX_DEPTH` and aliases that expand the document by
more than `MAX_ALIAS_EXPANSION` nodes (a "billion laughs" document) are located errors, found
by an iterative composer and walk, so no input reaches a recursion limit or exhausts memory.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Mapping
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..core.errors import ConfigError, Problem
from .files import MAX_FILE_BYTES, UnreadableFile, read_bytes

Location = tuple[str | int, ...]
MERGE_TAG = "tag:yaml.org,2002:merge"

MAX_DEPTH = 100
"""Deepest nesting of mappings and sequences (aliases included) a document may have."""
MAX_ALIAS_EXPANSION = 100_000
"""How many nodes aliases may add to a document once expanded."""

# libyaml's parser when it is there (much faster); the composer below is ours either way.
_BaseLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):
    """The safe loader whose scalar constructors turn any failure into a located YAML error."""


def _guarded(constructor: Any) -> Any:
    def construct(loader: Any, node: Node) -> Any:
        try:
            return constructor(loader, node)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # int() of 5,000 digits, a 30th of February, `!!float xyz`, ...
            detail = str(exc)
            detail = detail if len(detail) <= 120 else detail[:117] + "..."
            kind = str(node.tag).rpartition(":")[2] or "value"
            message = f"cannot read this {kind}: {detail}"
            raise yaml.constructor.ConstructorError(None, None, message, node.start_mark) from None
    return construct


for _tag, _constructor in list(_BaseLoader.yaml_constructors.items()):
    if not inspect.isgeneratorfunction(_constructor):  # collections are filled later, item by item
        _Loader.add_constructor(_tag, _guarded(_constructor))


class Source:
    """A parsed document: its data, its file name, the line of every node in it, and the problems
    that parsing found without stopping (duplicate keys: the last one wins, like YAML loaders do).

    `substituted` keeps, for every string that `${VAR}` expansion changed, its text as written,
    so that errors can show the reference instead of the value.
    """

    def __init__(
        self, data: Any, file: str | None, lines: dict[Location, int], problems: list[Problem] | None = None
    ) -> None:
        self.data = data
        self.file = file
        self.lines = lines
        self.problems = problems if problems is not None else []
        self.substituted: dict[Location, str] = {}

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

    def written(self, location: Location) -> str | None:
        """The text as written at `location` if `${VAR}` expansion changed it there (or above it)."""
        loc = tuple(location)
        while loc:
            if loc in self.substituted:
                return self.substituted[loc]
            loc = loc[:-1]
        return self.substituted.get(())


def dotted(location: Location) -> str:
    """`('steps', 'upper', 'links', 0)` -> `steps.upper.links[0]`."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _fail(message: str, file: str | None, line: int | None, where: str = "") -> ConfigError:
    return ConfigError([Problem(where, message, file=file, line=line)], subject=file or "document")


def parse(text: str, file: str | None = None) -> Source:
    """Parse YAML safely, keeping the line of every mapping key and sequence item."""
    loader = _Loader(text)
    try:
        node = _compose(loader, file)
        source = Source(None, file, {(): 1})  # an empty document is "on line 1"
        if node is not None:
            _index(node, source)
        source.data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, file) from None
    finally:
        loader.dispose()
    return source


def _yaml_error(exc: yaml.YAMLError, text: str, file: str | None) -> ConfigError:
    """A YAML error as a located problem; its message names the problem, never the document's text."""
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow, like NUL
        position = min(exc.position or 0, len(text))
        at = text.count("\n", 0, position) + 1
        character = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return _fail(f"YAML syntax error: character {ord(character):#06x} is not allowed in YAML", file, at)
    mark = getattr(exc, "problem_mark", None)
    line: int | None = mark.line + 1 if mark is not None else None
    detail = getattr(exc, "problem", None) or "not valid YAML"
    context = getattr(exc, "context", None)
    if context and "%" not in context:  # fixed texts like "while scanning a simple key"
        detail = f"{detail} ({context})"
    if line is None and "unacceptable character" in str(exc):
        match = re.search(r"position (\d+)", str(exc))  # libyaml's reader error carries the offset in its text
        if match:
            line = text.count("\n", 0, int(match.group(1))) + 1
    return _fail(f"YAML syntax error: {detail}", file, line)


def _compose(loader: Any, file: str | None) -> Node | None:
    """Build the node graph of the single document in `loader`'s event stream, without recursion."""
    loader.get_event()  # stream start
    if loader.check_event(StreamEndEvent):
        loader.get_event()
        return None
    document = loader.get_event()  # document start
    anchors: dict[str, Node] = {}
    # Open collections, each with the key node waiting for its value (mappings).
    stack: list[tuple[Node, list[Node | None]]] = []
    root: Node | None = None
    while root is None:
        event: Any = loader.get_event()
        start: Any = event.start_mark  # libyaml's marks and PyYAML's: the same fields
        end: Any = event.end_mark
        node: Node
        if isinstance(event, AliasEvent):
            if event.anchor not in anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", start
                )
            node = anchors[event.anchor]
        elif isinstance(event, ScalarEvent | SequenceStartEvent | MappingStartEvent):
            if event.anchor is not None and event.anchor in anchors:
                raise yaml.composer.ComposerError(
                    "found duplicate anchor", anchors[event.anchor].start_mark, "second occurrence", start
                )
            tag = event.tag
            if isinstance(event, ScalarEvent):
                if tag is None or tag == "!":
                    tag = loader.resolve(ScalarNode, event.value, event.implicit)
                node = ScalarNode(tag, event.value, start, end, style=event.style)
            else:
                kind = SequenceNode if isinstance(event, SequenceStartEvent) else MappingNode
                if tag is None or tag == "!":
                    tag = loader.resolve(kind, None, event.implicit)
                node = kind(tag, [], start, None, flow_style=event.flow_style)
            if event.anchor is not None:
                anchors[event.anchor] = node
            if not isinstance(node, ScalarNode):
                if len(stack) >= MAX_DEPTH:
                    raise _depth_error(file, start.line + 1)
                stack.append((node, [None]))
                continue
        elif isinstance(event, SequenceEndEvent | MappingEndEvent):
            node, _ = stack.pop()
            node.end_mark = end
        else:  # the parser guarantees the order of events; anything else is a bug there
            raise yaml.composer.ComposerError(None, None, f"unexpected {type(event).__name__}", start)
        if not stack:
            root = node
            continue
        parent, pending = stack[-1]
        if isinstance(parent, SequenceNode):
            parent.value.append(node)
        elif pending[0] is None:
            pending[0] = node
        else:
            parent.value.append((pending[0], node))
            pending[0] = None
    loader.get_event()  # document end
    if not loader.check_event(StreamEndEvent):
        extra: Any = loader.get_event()
        raise yaml.composer.ComposerError(
            "expected a single document in the stream", document.start_mark, "but found another document",
            extra.start_mark,
        )
    loader.get_event()
    return root


def _short(location: Location) -> str:
    """A location for a message, cut after a few levels (a 100-level path helps nobody)."""
    return dotted(location[:8]) + ("..." if len(location) > 8 else "")


def _depth_error(file: str | None, line: int | None, where: str = "") -> ConfigError:
    return _fail(f"nested more than {MAX_DEPTH} levels deep (mappings and sequences, aliases included)",
                 file, line, where)


def _index(root: Node, source: Source) -> None:
    """Record the line of every key and item, report keys defined twice in one mapping, and bound
    what aliases expand to (their size and depth; an alias inside itself is an error)."""
    lines = source.lines
    budget = MAX_ALIAS_EXPANSION
    seen: set[int] = set()
    on_path: set[int] = set()
    # Work items: (node, location, depth); None marks leaving the node on top of `leaving`.
    work: list[tuple[Node, Location, int] | None] = [(root, (), 0)]
    leaving: list[int] = []
    lines[()] = root.start_mark.line + 1
    while work:
        item = work.pop()
        if item is None:
            on_path.discard(leaving.pop())
            continue
        node, location, depth = item
        if id(node) in on_path:
            raise _fail("an alias refers to a node that contains it (a recursive alias)", source.file,
                        node.start_mark.line + 1, _short(location))
        if id(node) in seen:
            budget -= 1
            if budget < 0:
                raise _fail(
                    f"aliases expand this document by more than {MAX_ALIAS_EXPANSION:,} nodes "
                    "(an alias bomb?)", source.file, source.line(location[:1]), _short(location),
                )
        seen.add(id(node))
        if depth > MAX_DEPTH:
            raise _depth_error(source.file, source.line(location[:1]), _short(location))
        if isinstance(node, ScalarNode):
            continue
        on_path.add(id(node))
        leaving.append(id(node))
        work.append(None)
        children: list[tuple[Node, Location]] = []
        if isinstance(node, MappingNode):
            children = _mapping_children(node, location, source)
        elif isinstance(node, SequenceNode):
            for i, child in enumerate(node.value):
                lines[(*location, i)] = child.start_mark.line + 1
                children.append((child, (*location, i)))
        # Reversed: the stack then visits children in document order.
        work.extend((child, loc, depth + 1) for child, loc in reversed(children))


def _mapping_children(node: MappingNode, location: Location, source: Source) -> list[tuple[Node, Location]]:
    """The pairs of a mapping that count (the last of duplicate keys wins), recording lines and duplicates."""
    last: dict[tuple[str, Any], int] = {}
    for i, (key_node, _) in enumerate(node.value):
        if isinstance(key_node, ScalarNode) and key_node.tag != MERGE_TAG:
            last[(key_node.tag, key_node.value)] = i
    first_lines: dict[tuple[str, Any], int] = {}
    children: list[tuple[Node, Location]] = []
    for i, (key_node, value_node) in enumerate(node.value):
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, ScalarNode):
            # A complex key (`? [a, b]`): walked for its size and depth; no workflow field has one.
            children.append((key_node, (*location, "?")))
            children.append((value_node, (*location, "?")))
            continue
        child = (*location, key_node.value)
        if key_node.tag != MERGE_TAG:
            identity = (key_node.tag, key_node.value)
            if identity in first_lines:
                message = f"duplicate key (first defined on line {first_lines[identity]})"
                source.problems.append(Problem(dotted(child), message, file=source.file, line=line))
            else:
                first_lines[identity] = line
            if i != last[identity]:
                continue
        source.lines[child] = line
        children.append((value_node, child))
    return children


def read(path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES) -> Source:
    """Read and parse a YAML file (ConfigError naming the file when it cannot be read or parsed)."""
    return parse(read_text(path, max_bytes), str(path))


def read_text(path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES) -> str:
    """The text of a YAML file; a missing, special, too large or non-UTF-8 file is a ConfigError naming it."""
    file = str(path)
    try:
        raw = read_bytes(path, max_bytes)
    except UnreadableFile as exc:
        raise _fail(str(exc), file, None) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        message = (
            f"not UTF-8 text: byte 0x{raw[exc.start]:02x} on line {line} is not valid UTF-8 (save the file as UTF-8)"
        )
        raise _fail(message, file, line) from None


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(
    data: Any,
    source: Source,
    problems: list[Problem],
    location: Location = (),
    secrets: dict[str, str] | None = None,
) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string; a missing VAR is a problem.

    Each value taken from the environment is recorded in `secrets` (value -> `${VAR}`), and each
    changed string's text as written in `source.substituted`, so errors can hide the values.
    """
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
            if secrets is not None and value:
                secrets[value] = match.group(0)
            return value

        expanded = _ENV.sub(substitute, data)
        if expanded != data:
            source.substituted[location] = data
        return expanded
    if isinstance(data, Mapping):
        return {k: expand_env(v, source, problems, (*location, k), secrets) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, source, problems, (*location, i), secrets) for i, v in enumerate(data)]
    return data
