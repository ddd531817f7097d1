"""Render a workflow's graph as Mermaid or Graphviz DOT text.

Both renderers walk the same description of the graph: the workflow's inputs and outputs as
nodes of their own, one node per step, one edge per link. A nested workflow becomes a
subgraph (a cluster in DOT) whose own inputs and outputs are where the parent's links end.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .links import parse_endpoint
from .triggers import AllDataReceived
from .typing_utils import type_name

if TYPE_CHECKING:
    from .data_units import DataUnit
    from .links import Link
    from .steps import Step
    from .workflow import Workflow

__all__ = ["to_dot", "to_mermaid"]


@dataclass
class _Node:
    id: str
    lines: list[str]
    role: str  # "input", "output", "step" or "unknown"


@dataclass
class _Edge:
    source: str
    target: str
    lines: list[str]
    kind: str


@dataclass
class _Cluster:
    id: str
    lines: list[str]
    nodes: list[_Node] = field(default_factory=list)
    clusters: list[_Cluster] = field(default_factory=list)


@dataclass
class _Graph:
    title: str
    root: _Cluster
    edges: list[_Edge] = field(default_factory=list)


class _Ids:
    """Readable, unique node identifiers that are safe in both formats.

    Only the last `MAX_PARTS` names of a nested path make an id (a suffix keeps it unique), so
    that ids do not grow with the nesting depth.
    """

    MAX_PARTS = 6

    def __init__(self) -> None:
        self.used: set[str] = set()
        self.next: dict[str, int] = {}  # the next suffix to try for a base: no rescans

    def make(self, *parts: str) -> str:
        parts = parts[-self.MAX_PARTS :]
        base = "_".join(re.sub(r"\W", "_", part, flags=re.ASCII) for part in parts) or "node"
        candidate, n = base, self.next.get(base, 2)
        while candidate in self.used:
            candidate, n = f"{base}_{n}", n + 1
        self.next[base] = n
        self.used.add(candidate)
        return candidate


def _unit_lines(name: str, unit: DataUnit | None) -> list[str]:
    if unit is None or unit.type is None:
        return [name]
    return [f"{name}: {type_name(unit.type)}"]


def _link_lines(link: Link) -> list[str]:
    source_unit = link.source.partition(".")[2] or link.source
    target_unit = link.target.partition(".")[2] or link.target
    lines = [f"{source_unit} → {target_unit}"]
    extra: list[str] = []
    if link.kind == "queue" and link.maxsize is not None:
        extra.append(f"queue({link.maxsize})")
    elif link.kind != "direct":
        extra.append(link.kind)
    if link.max_iterations is not None:
        extra.append(f"≤{link.max_iterations}")
    if extra:
        lines.append(" ".join(extra))
    return lines


def _trigger_text(step: Step) -> str | None:
    trigger = step.trigger
    if isinstance(trigger, AllDataReceived) or trigger.kind == AllDataReceived.kind:
        return None
    return trigger.describe()


def _build(workflow: Workflow) -> _Graph:
    ids = _Ids()
    graph = _Graph(workflow.name, _Cluster(ids.make("workflow", workflow.name), [workflow.name]))
    # Nested workflows are added depth first with an explicit stack of suspended `_add_workflow`
    # calls (no recursion, however deep the nesting): each yields a nested workflow to add and
    # receives that workflow's ports back.
    stack = [_add_workflow(workflow, graph.root, graph, ids, ())]
    ports: _Ports | None = None
    while stack:
        try:
            request = stack[-1].send(ports)  # type: ignore[arg-type]
        except StopIteration as done:
            stack.pop()
            ports = done.value
            continue
        nested, cluster, prefix = request
        stack.append(_add_workflow(nested, cluster, graph, ids, prefix))
        ports = None
    return graph


_Ports = tuple[dict[str, str], dict[str, str]]
_Request = tuple["Workflow", _Cluster, tuple[str, ...]]


def _add_workflow(
    workflow: Workflow, cluster: _Cluster, graph: _Graph, ids: _Ids, prefix: tuple[str, ...]
) -> Generator[_Request, _Ports, _Ports]:
    """Add a workflow's nodes to `cluster` and its links to `graph`; return its input and output node ids.

    Yields each nested workflow (with its cluster and prefix) and receives its ports.
    """
    from .workflow import Workflow

    inputs: dict[str, str] = {}
    outputs: dict[str, str] = {}
    for name, unit in workflow.inputs.items():
        inputs[name] = ids.make(*prefix, "in", name)
        cluster.nodes.append(_Node(inputs[name], _unit_lines(name, unit), "input"))

    # A link's endpoint is (node id) for plain steps, or the nested workflow's own input/output node.
    step_nodes: dict[str, str] = {}
    nested: dict[str, _Ports] = {}
    for name, step in workflow.steps.items():
        trigger = _trigger_text(step)
        if isinstance(step, Workflow):
            title = [name] if step.name == name else [f"{name} ({step.name})"]
            sub = _Cluster(ids.make(*prefix, "wf", name), title + ([trigger] if trigger else []))
            cluster.clusters.append(sub)
            nested[name] = yield (step, sub, (*prefix, name))
        else:
            step_nodes[name] = ids.make(*prefix, "step", name)
            cluster.nodes.append(_Node(step_nodes[name], [name] + ([trigger] if trigger else []), "step"))

    for name, unit in workflow.outputs.items():
        outputs[name] = ids.make(*prefix, "out", name)
        cluster.nodes.append(_Node(outputs[name], _unit_lines(name, unit), "output"))

    def endpoint(text: str, side: str) -> str:
        try:
            owner, port = parse_endpoint(text)
        except ValueError:
            owner, port = text, ""
        if owner == "inputs" and side == "source":
            table, role = inputs, "input"
        elif owner == "outputs" and side == "target":
            table, role = outputs, "output"
        elif owner in nested:
            table, role = (nested[owner][1] if side == "source" else nested[owner][0]), "unknown"
        elif owner in step_nodes:
            return step_nodes[owner]
        else:
            # Not part of the graph (an invalid workflow): still draw it, marked as unknown.
            key = f"?{text}"
            if key not in step_nodes:
                step_nodes[key] = ids.make(*prefix, "unknown", owner)
                cluster.nodes.append(_Node(step_nodes[key], [owner, "(unknown)"], "unknown"))
            return step_nodes[key]
        if port not in table:
            table[port] = ids.make(*prefix, "in" if side == "source" else "out", owner, port)
            cluster.nodes.append(_Node(table[port], [f"{owner}.{port}", "(undeclared)"], role))
        return table[port]

    for link in workflow.links:
        graph.edges.append(
            _Edge(endpoint(link.source, "source"), endpoint(link.target, "target"), _link_lines(link), link.kind)
        )
    return inputs, outputs


MAX_INDENT = 32
"""Nesting levels that are indented; deeper ones keep this indentation, so that the text of a
deeply nested workflow grows with its size, not with the square of its depth."""


def _clusters(root: _Cluster) -> Iterator[tuple[bool, _Cluster, int]]:
    """(entering, cluster, indentation depth) for each cluster, depth first: enter, its sub-clusters, leave."""
    stack: list[tuple[bool, _Cluster, int]] = [(True, root, 1)]
    while stack:
        entering, cluster, depth = stack.pop()
        yield entering, cluster, min(depth, MAX_INDENT)
        if entering:
            stack.append((False, cluster, depth))
            stack.extend((True, sub, depth + 1) for sub in reversed(cluster.clusters))


# -- Mermaid ----------------------------------------------------------------------------------
# Mermaid's entity codes (`#34;`) work inside quoted labels where backslash escapes do not.
_MERMAID_ENTITIES = {char: f"#{ord(char)};" for char in '#"&<>|`[]{}'}
_MERMAID_SPECIAL = re.compile("[" + re.escape("".join(_MERMAID_ENTITIES)) + "]")


def _mermaid_text(lines: list[str]) -> str:
    """Label text for a quoted Mermaid string: entities for special characters, `<br/>` between lines."""
    escaped = []
    for line in lines:
        for part in line.splitlines() or [""]:
            escaped.append(_MERMAID_SPECIAL.sub(lambda m: _MERMAID_ENTITIES[m.group()], part))
    return "<br/>".join(escaped)


_MERMAID_SHAPES = {
    "input": ('(["', '"])'),
    "output": ('(["', '"])'),
    "step": ('["', '"]'),
    "unknown": ('{{"', '"}}'),
}
_MERMAID_ARROWS = {"conditional": "-.->", "queue": "==>"}


def to_mermaid(workflow: Workflow) -> str:
    """The workflow's graph as a Mermaid flowchart (for Markdown, GitHub, mermaid.live)."""
    graph = _build(workflow)
    title = " ".join(graph.title.split())
    out = ["flowchart LR", f"    %% workflow: {title}"]

    for entering, cluster, depth in _clusters(graph.root):
        outer = "    " * (depth - 1)
        if not entering:
            if cluster is not graph.root:
                out.append(f"{outer}end")
            continue
        if cluster is not graph.root:
            out.append(f'{outer}subgraph {cluster.id} ["{_mermaid_text(cluster.lines)}"]')
        pad = "    " * depth
        for node in cluster.nodes:
            open_, close = _MERMAID_SHAPES[node.role]
            out.append(f"{pad}{node.id}{open_}{_mermaid_text(node.lines)}{close}")
            if node.role in ("input", "output", "unknown"):
                out.append(f"{pad}class {node.id} {node.role}")
    for edge in graph.edges:
        arrow = _MERMAID_ARROWS.get(edge.kind, "-->")
        out.append(f'    {edge.source} {arrow}|"{_mermaid_text(edge.lines)}"| {edge.target}')
    out.append("    classDef input fill:#e8f4ff,stroke:#4a90d9")
    out.append("    classDef output fill:#eaf7ea,stroke:#4caf50")
    out.append("    classDef unknown fill:#fdecea,stroke:#d9534f,stroke-dasharray:4")
    return "\n".join(out) + "\n"


# -- DOT ----------------------------------------------------------------------------------------
def _dot_string(text: str) -> str:
    """A double-quoted DOT string; backslashes are escaped so that no `\\n`-style escape sneaks in."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_label(lines: list[str]) -> str:
    parts = [part for line in lines for part in (line.splitlines() or [""])]
    escaped = [part.replace("\\", "\\\\").replace('"', '\\"') for part in parts]
    return '"' + "\\n".join(escaped) + '"'


_DOT_NODE_STYLES = {
    "input": 'shape=box, style="rounded,filled", fillcolor="#e8f4ff"',
    "output": 'shape=box, style="rounded,filled", fillcolor="#eaf7ea"',
    "step": "shape=box",
    "unknown": 'shape=box, style="dashed", color="#d9534f"',
}
_DOT_EDGE_STYLES = {"conditional": "style=dashed", "queue": "style=bold", "transform": "arrowhead=empty"}


def to_dot(workflow: Workflow) -> str:
    """The workflow's graph in Graphviz DOT (`nanobrain graph wf.yaml --format dot | dot -Tsvg`)."""
    graph = _build(workflow)
    out = [
        f"digraph {_dot_string(graph.title)} {{",
        "    rankdir=LR;",
        f"    label={_dot_label([graph.title])};",
        "    labelloc=t;",
        '    node [fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]

    for entering, cluster, depth in _clusters(graph.root):
        outer = "    " * (depth - 1)
        if not entering:
            if cluster is not graph.root:
                out.append(f"{outer}}}")
            continue
        if cluster is not graph.root:
            out.append(f"{outer}subgraph {_dot_string('cluster_' + cluster.id)} {{")
            out.append(f"{outer}    label={_dot_label(cluster.lines)};")
            out.append(f"{outer}    style=rounded;")
        pad = "    " * depth
        for node in cluster.nodes:
            out.append(f"{pad}{_dot_string(node.id)} [label={_dot_label(node.lines)}, {_DOT_NODE_STYLES[node.role]}];")
    for edge in graph.edges:
        attributes = [f"label={_dot_label(edge.lines)}"]
        if edge.kind in _DOT_EDGE_STYLES:
            attributes.append(_DOT_EDGE_STYLES[edge.kind])
        out.append(f"    {_dot_string(edge.source)} -> {_dot_string(edge.target)} [{', '.join(attributes)}];")
    out.append("}")
    return "\n".join(out) + "\n"
