// A workflow graph drawn as SVG: nodes in layers (longest path from the inputs), links as
// lines. Each node's state (idle, running, succeeded, failed) is a class the run view sets.

const SVG = "http://www.w3.org/2000/svg";
const W = 150;
const H = 40;
const GAP_X = 60;
const GAP_Y = 18;

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function layers(graph) {
  const depth = new Map(graph.nodes.map((n) => [n.id, n.kind === "input" ? 0 : 1]));
  // Bounded relaxation: cycles (allowed with an iteration bound) must not loop forever.
  for (let round = 0; round < graph.nodes.length; round += 1) {
    let changed = false;
    for (const e of graph.edges) {
      const want = depth.get(e.source) + 1;
      if (want > depth.get(e.target) && want <= graph.nodes.length) {
        depth.set(e.target, want);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const maxStep = Math.max(1, ...graph.nodes.filter((n) => n.kind !== "output").map((n) => depth.get(n.id)));
  for (const n of graph.nodes) if (n.kind === "output") depth.set(n.id, maxStep + 1);
  return depth;
}

/** Draw `graph` into `container`; returns a Map of node id -> SVG group (for states). */
export function drawGraph(graph, container) {
  const depth = layers(graph);
  const columns = new Map();
  for (const n of graph.nodes) {
    const d = depth.get(n.id);
    if (!columns.has(d)) columns.set(d, []);
    columns.get(d).push(n);
  }
  const ordered = [...columns.keys()].sort((a, b) => a - b);
  const place = new Map();
  ordered.forEach((d, x) => {
    columns.get(d).forEach((n, y) => place.set(n.id, { x: 10 + x * (W + GAP_X), y: 10 + y * (H + GAP_Y) }));
  });
  const tallest = Math.max(...[...columns.values()].map((c) => c.length));
  const width = 20 + ordered.length * (W + GAP_X) - GAP_X;
  const height = 20 + tallest * (H + GAP_Y) - GAP_Y;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "graph", role: "img" });
  root.setAttribute("aria-label", `graph of workflow ${graph.workflow}`);
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
  defs.append(marker);
  root.append(defs);
  for (const e of graph.edges) {
    const a = place.get(e.source);
    const b = place.get(e.target);
    if (!a || !b) continue;
    const line = svg("path", {
      d: `M${a.x + W},${a.y + H / 2} C${a.x + W + GAP_X / 2},${a.y + H / 2} ${b.x - GAP_X / 2},${b.y + H / 2} ${b.x},${b.y + H / 2}`,
      class: "edge edge-" + e.kind,
      "marker-end": "url(#arrow)",
    });
    const title = svg("title");
    title.textContent = e.label;
    line.append(title);
    root.append(line);
  }
  const groups = new Map();
  for (const n of graph.nodes) {
    const p = place.get(n.id);
    const g = svg("g", { class: `node node-${n.kind} state-idle`, transform: `translate(${p.x},${p.y})` });
    g.dataset.node = n.id;
    g.dataset.state = "idle";
    g.append(svg("rect", { width: W, height: H, rx: n.kind === "step" ? 6 : 18 }));
    const label = svg("text", { x: W / 2, y: H / 2 + 5, "text-anchor": "middle" });
    label.textContent = n.label.length > 20 ? n.label.slice(0, 19) + "…" : n.label;
    const title = svg("title");
    title.textContent = `${n.kind} ${n.label}` + (n.trigger ? ` (${n.trigger})` : "");
    g.append(label, title);
    root.append(g);
    groups.set(n.id, g);
  }
  container.replaceChildren(root);
  return groups;
}

export function setNodeState(groups, id, state) {
  const g = groups.get(id);
  if (!g) return;
  g.classList.remove("state-idle", "state-running", "state-succeeded", "state-failed", "state-waiting");
  g.classList.add("state-" + state);
  g.dataset.state = state;
}
