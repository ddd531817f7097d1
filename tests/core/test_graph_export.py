"""Mermaid and DOT renderings of a workflow graph: nodes, edges, labels, nesting, escaping."""

from __future__ import annotations

import re

import pytest

import nanobrain as nb
from nanobrain.core.graph_export import MAX_INDENT, to_dot, to_mermaid


def upper(text: str) -> str:
    return text.upper()


def exclaim(text: str) -> str:
    return text + "!"


def shout() -> nb.Workflow:
    return nb.Workflow.sequence(upper, exclaim, name="shout")


def mermaid_edges(text: str) -> list[tuple[str, str, str, str]]:
    """(source, arrow, label, target) of every edge line."""
    return re.findall(r"^\s*(\w+) (-->|-\.->|==>)\|\"(.*)\"\| (\w+)$", text, flags=re.M)


def mermaid_nodes(text: str) -> dict[str, str]:
    """Node id -> label text."""
    return dict(re.findall(r"^\s*(\w+)(?:\(\[|\[|\{\{)\"(.*)\"(?:\]\)|\]|\}\})$", text, flags=re.M))


def dot_edges(text: str) -> list[tuple[str, str, str]]:
    return re.findall(r'^\s*"(\w+)" -> "(\w+)" \[label="((?:[^"\\]|\\.)*)"', text, flags=re.M)


def dot_nodes(text: str) -> dict[str, str]:
    return dict(re.findall(r'^\s*"(\w+)" \[label="((?:[^"\\]|\\.)*)"', text, flags=re.M))


# -- Mermaid --------------------------------------------------------------------------------------
def test_mermaid_has_input_output_and_step_nodes() -> None:
    text = to_mermaid(shout())
    assert text.startswith("flowchart LR\n")
    nodes = mermaid_nodes(text)
    assert sorted(nodes.values()) == ["exclaim", "result: str", "text: str", "upper"]


def test_mermaid_has_one_labelled_edge_per_link() -> None:
    workflow = shout()
    edges = mermaid_edges(to_mermaid(workflow))
    assert len(edges) == len(workflow.links) == 3
    nodes = mermaid_nodes(to_mermaid(workflow))
    named = {(nodes[s], label, nodes[t]) for s, _, label, t in edges}
    assert named == {
        ("text: str", "text → text", "upper"),
        ("upper", "result → text", "exclaim"),
        ("exclaim", "result → result", "result: str"),
    }


def test_link_kinds_and_bounds_are_labelled() -> None:
    workflow = nb.Workflow("kinds", inputs={"text": str}, outputs={"a": str, "b": str, "c": str})
    workflow.add(upper)
    workflow.add(exclaim)
    workflow.link("inputs.text", "upper.text", transform=str.strip)
    workflow.link("upper.result", "exclaim.text", when=bool, max_iterations=3)
    workflow.link("exclaim.result", "outputs.a", maxsize=8)
    workflow.link("upper.result", "outputs.b")
    workflow.link("exclaim.result", "outputs.c", max_iterations=2)
    edges = {label: arrow for _, arrow, label, _ in mermaid_edges(to_mermaid(workflow))}
    assert edges == {
        "text → text<br/>transform": "-->",
        "result → text<br/>conditional ≤3": "-.->",
        "result → a<br/>queue(8)": "==>",
        "result → b": "-->",
        "result → c<br/>≤2": "-->",
    }
    labels = [label for _, _, label in dot_edges(to_dot(workflow))]
    assert labels == [
        "text → text\\ntransform",
        "result → text\\nconditional ≤3",
        "result → a\\nqueue(8)",
        "result → b",
        "result → c\\n≤2",
    ]


def test_trigger_kind_is_shown_unless_default() -> None:
    workflow = nb.Workflow("triggers", inputs={"text": str})
    workflow.add(nb.step(name="join")(upper))
    workflow.add(nb.step(name="eager", trigger=nb.OnUpdate())(upper))
    workflow.add(nb.step(name="by_hand", trigger=nb.Manual())(upper))
    workflow.add(nb.step(name="tick", trigger=nb.Interval(2, count=3))(upper))
    for name in workflow.steps:
        workflow.link("inputs.text", f"{name}.text")
    labels = set(mermaid_nodes(to_mermaid(workflow)).values())
    assert {"join", "eager<br/>on_update", "by_hand<br/>manual", "tick<br/>interval(2s, count=3)"} <= labels
    dot_labels = set(dot_nodes(to_dot(workflow)).values())
    assert {"join", "eager\\non_update", "by_hand\\nmanual"} <= dot_labels


def test_nested_workflow_is_a_subgraph_and_links_reach_its_ports() -> None:
    inner = nb.Workflow.sequence(upper, exclaim, name="inner")
    outer = nb.Workflow("outer", inputs={"text": str}, outputs={"result": str})
    outer.add(inner)
    outer.link("inputs.text", "inner.text")
    outer.link("inner.result", "outputs.result")
    text = to_mermaid(outer)
    subgraph = re.search(r'subgraph (\w+) \["inner"\]\n(.*?)\n\s*end\n', text, flags=re.S)
    assert subgraph is not None
    inside = set(mermaid_nodes(subgraph.group(2)))
    edges = mermaid_edges(text)
    assert len(edges) == len(outer.links) + len(inner.links)
    nodes = mermaid_nodes(text)
    assert sorted(nodes[n] for n in inside) == ["exclaim", "result: str", "text: str", "upper"]
    # The parent's link ends at the nested workflow's own input node, inside the subgraph.
    (into,) = [t for s, _, label, t in edges if s not in inside and t in inside]
    assert nodes[into] == "text: str"
    (out_of,) = [s for s, _, label, t in edges if s in inside and t not in inside]
    assert nodes[out_of] == "result: str"
    dot = to_dot(outer)
    assert 'subgraph "cluster_' in dot
    assert 'label="inner";' in dot


def test_mermaid_escapes_labels() -> None:
    def echo(value: str) -> str:
        return value

    nasty = 'say "hi" <b>|[x]{y}#1;&'
    workflow = nb.Workflow("esc", inputs={"value": str}, outputs={"result": str})
    workflow.add(echo, name=nasty)
    workflow.add(echo, name="end")  # a Mermaid keyword must not be used as a bare id
    workflow.add(echo, name="two\nlines")
    workflow.link("inputs.value", f"{nasty}.value")
    workflow.link(f"{nasty}.result", "end.value")
    workflow.link("end.result", "two\nlines.value")
    workflow.link("two\nlines.result", "outputs.result")
    text = to_mermaid(workflow)
    labels = set(mermaid_nodes(text).values())
    assert "say #34;hi#34; #60;b#62;#124;#91;x#93;#123;y#125;#35;1;#38;" in labels
    assert "two<br/>lines" in labels
    for line in text.splitlines():
        assert line.count('"') % 2 == 0, line  # no quote escapes its label
        for label in re.findall(r'"([^"]*)"', line):
            assert not re.search(r"[<>|\[\]{}&]", label.replace("<br/>", "")), label
    assert not re.search(r"^\s*end\[", text, flags=re.M)
    assert len(mermaid_edges(text)) == 4


def test_dot_escapes_labels() -> None:
    def echo(value: str) -> str:
        return value

    workflow = nb.Workflow('wf "q"', inputs={"value": str}, outputs={"result": str})
    workflow.add(echo, name='a "b" \\n c')
    workflow.link("inputs.value", 'a "b" \\n c.value')
    workflow.link('a "b" \\n c.result', "outputs.result")
    text = to_dot(workflow)
    assert text.startswith('digraph "wf \\"q\\"" {')
    # A literal backslash stays a backslash (not a DOT line break), quotes are escaped.
    assert 'label="a \\"b\\" \\\\n c"' in text
    assert len(dot_edges(text)) == 2


def test_dot_structure() -> None:
    text = to_dot(shout())
    assert text.startswith('digraph "shout" {')
    assert text.rstrip().endswith("}")
    assert text.count("{") == text.count("}")
    nodes = dot_nodes(text)
    edges = [(nodes[s], label, nodes[t]) for s, t, label in dot_edges(text)]
    assert ("upper", "result → text", "exclaim") in edges
    assert len(edges) == 3


def test_untyped_units_show_their_name_only() -> None:
    workflow = nb.Workflow("untyped", inputs=["anything"], outputs=["out"])
    workflow.link("inputs.anything", "outputs.out")
    assert set(mermaid_nodes(to_mermaid(workflow)).values()) == {"anything", "out"}


@pytest.mark.parametrize("render", [to_mermaid, to_dot])
def test_invalid_links_still_render(render) -> None:  # type: ignore[no-untyped-def]
    workflow = nb.Workflow("broken", inputs={"text": str})
    workflow.add(upper)
    workflow.link("inputs.text", "upper.text")
    workflow.link("upper.result", "ghost.text")  # no such step: drawn as an unknown node
    text = render(workflow)
    assert "ghost" in text
    assert "unknown" in text


def test_ids_are_unique_when_sanitized_names_collide() -> None:
    def echo(value: str) -> str:
        return value

    workflow = nb.Workflow("ids", inputs={"value": str})
    workflow.add(echo, name="a-b")
    workflow.add(echo, name="a_b")
    workflow.link("inputs.value", "a-b.value")
    workflow.link("inputs.value", "a_b.value")
    nodes = mermaid_nodes(to_mermaid(workflow))
    assert sorted(nodes.values()) == ["a-b", "a_b", "value: str"]


# -- no recursion, however deep or long --------------------------------------------------------------
def nested(depth: int) -> nb.Workflow:
    """`depth` workflows, each holding the next, the innermost being `shout`; links reach every level."""
    inner = shout()
    for level in range(depth):
        outer = nb.Workflow(f"level{level}", inputs={"text": str}, outputs={"result": str}, steps=[inner])
        outer.link("inputs.text", f"{inner.name}.text")
        outer.link(f"{inner.name}.result", "outputs.result")
        inner = outer
    return inner


def test_deeply_nested_workflows_render_in_both_formats() -> None:
    workflow = nested(2_000)
    mermaid = to_mermaid(workflow)
    assert mermaid.count("subgraph ") == 2_000
    assert len(mermaid_edges(mermaid)) == 2 * 2_000 + 3
    dot = to_dot(workflow)
    assert dot.count("subgraph ") == 2_000
    assert len(dot_edges(dot)) == 2 * 2_000 + 3
    # Indentation stops growing after a while, so the text grows with the size, not the depth squared.
    assert max(len(line) - len(line.lstrip()) for line in mermaid.splitlines()) == 4 * MAX_INDENT
    assert len(mermaid) < 2_000 * 2_000


def test_nested_rendering_is_the_same_as_before_the_walk_became_iterative() -> None:
    text = to_mermaid(nested(2))
    lines = [line.strip() for line in text.splitlines()]
    assert lines[:4] == [
        "flowchart LR",
        "%% workflow: level1",
        "in_text([\"text: str\"])",
        "class in_text input",
    ]
    assert lines.index('subgraph wf_level0 ["level0"]') < lines.index('subgraph level0_wf_shout ["shout"]')
    assert lines.count("end") == 2


def test_a_long_chain_renders() -> None:
    steps = [nb.FunctionStep(upper, f"s{i}") for i in range(2_000)]
    workflow = nb.Workflow("long", inputs={"text": str}, outputs={"result": str}, steps=steps)
    workflow.link("inputs.text", "s0.text")
    for i in range(1, 2_000):
        workflow.link(f"s{i - 1}.result", f"s{i}.text")
    workflow.link("s1999.result", "outputs.result")
    assert len(mermaid_edges(to_mermaid(workflow))) == 2_001
