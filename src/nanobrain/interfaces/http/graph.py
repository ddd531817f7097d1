"""A workflow's graph as JSON for the UI: its inputs, steps and outputs as nodes, its links as edges.

Only the workflow's own level: a nested workflow is one step node (`nested: true`), as run
events of the top level name it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...core.links import parse_endpoint

if TYPE_CHECKING:
    from ...core.workflow import Workflow


def graph_json(workflow: Workflow) -> dict[str, Any]:
    """`{"nodes": [{id, kind, label}], "edges": [{source, target, kind, label}]}`.

    Node ids: `inputs.NAME`, `outputs.NAME`, or the step's name (so that step events map onto them).
    """
    from ...core.workflow import Workflow

    nodes: list[dict[str, Any]] = []
    known: set[str] = set()

    def add(node_id: str, kind: str, label: str, **extra: Any) -> None:
        if node_id not in known:
            known.add(node_id)
            nodes.append({"id": node_id, "kind": kind, "label": label, **extra})

    for name in workflow.inputs:
        add(f"inputs.{name}", "input", name)
    for name, step in workflow.steps.items():
        add(name, "step", name, trigger=step.trigger.describe(), nested=isinstance(step, Workflow))
    for name in workflow.outputs:
        add(f"outputs.{name}", "output", name)

    def node(endpoint: str) -> tuple[str, str]:
        owner, port = parse_endpoint(endpoint)
        if owner in ("inputs", "outputs"):
            node_id = f"{owner}.{port}"
            add(node_id, owner[:-1], port)
            return node_id, port
        add(owner, "step", owner)
        return owner, port

    edges = []
    for link in workflow.links:
        source, out = node(link.source)
        target, into = node(link.target)
        edges.append({"source": source, "target": target, "kind": link.kind, "label": f"{out} → {into}"})
    return {"workflow": workflow.name, "nodes": nodes, "edges": edges}
