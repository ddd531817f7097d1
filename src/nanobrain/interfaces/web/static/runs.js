// Runs: the list (refreshed while shown) and one run's live view: its graph with each step's
// state, the event timeline with durations, each step's inputs and outputs, tokens and usage,
// errors, and a form for the input a waiting run needs.

import { api, events } from "./api.js";
import { needLogin } from "./app.js";
import { h, explain, pretty, when } from "./dom.js";
import { drawGraph, setNodeState } from "./graph.js";
import { inputForm } from "./workflows.js";

const STATES = ["running", "waiting", "succeeded", "failed", "cancelled", "interrupted"];

function status(state) {
  return h("span", { class: `status status-${state}`, dataset: { status: state }, text: state });
}

export function runsView(root) {
  const filter = h("select", { id: "run-filter", "aria-label": "Show runs", onchange: () => load() },
    h("option", { value: "", text: "all runs" }), STATES.map((s) => h("option", { value: s, text: s })));
  const table = h("tbody", { id: "runs" });
  root.replaceChildren(
    h("section", { class: "card" },
      h("div", { class: "chat-head" }, h("h2", { text: "Runs" }), filter),
      h("div", { class: "scroll" },
        h("table", { class: "runs" },
          h("thead", {}, h("tr", {}, ["Run", "Workflow", "Status", "Started", "Events"].map((t) => h("th", { text: t })))),
          table))));
  async function load() {
    try {
      const query = filter.value ? `?status=${filter.value}` : "";
      const { runs } = await api(`/v1/runs${query}`);
      table.replaceChildren(...runs.reverse().map((r) => h("tr", { dataset: { run: r.run_id } },
        h("td", {}, h("a", { href: `#/runs/${encodeURIComponent(r.run_id)}`, text: r.run_id })),
        h("td", { text: r.workflow }),
        h("td", {}, status(r.status)),
        h("td", { text: when(r.created) }),
        h("td", { text: String(r.events) }))));
      if (!runs.length) table.append(h("tr", {}, h("td", { colspan: 5, class: "muted", text: "No runs yet: start one from Workflows." })));
    } catch (err) {
      if (!needLogin(err)) table.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "error", text: explain(err) })));
    }
  }
  load();
  const timer = setInterval(load, 2000);
  return () => clearInterval(timer);
}

export function runView(root, runId) {
  const abort = new AbortController();
  const head = h("div", { class: "chat-head" }, h("h2", { text: `Run ${runId}` }));
  const summary = h("dl", { class: "summary", id: "run-summary" });
  const graphBox = h("div", { class: "graph-box", id: "run-graph" });
  const waiting = h("div", { id: "run-waiting" });
  const errorBox = h("div", { id: "run-error" });
  const timeline = h("tbody", { id: "timeline" });
  const steps = h("div", { id: "steps" });
  const outputs = h("pre", { id: "run-outputs" });
  const cancel = h("button", { type: "button", class: "danger", id: "cancel-run", text: "Cancel run", hidden: true, onclick: () => cancelRun() });
  head.append(cancel);
  root.replaceChildren(h("section", { class: "card run" },
    head, summary, errorBox, waiting, graphBox,
    h("div", { class: "columns" },
      h("div", {}, h("h3", { text: "Timeline" }),
        h("div", { class: "scroll" }, h("table", { class: "timeline" },
          h("thead", {}, h("tr", {}, ["+s", "Event", "Step", "Duration"].map((t) => h("th", { text: t })))), timeline))),
      h("div", {}, h("h3", { text: "Steps" }), steps, h("h3", { text: "Outputs" }), outputs))));

  let workflow = null;
  let groups = new Map();
  let start = null;
  let lastId = 0;
  const stepPanels = new Map();

  function panel(step) {
    if (!stepPanels.has(step)) {
      const box = {
        state: h("span", { class: "status status-idle", text: "idle" }),
        inputs: h("pre", { class: "io" }),
        outputs: h("pre", { class: "io" }),
        tokens: h("pre", { class: "io tokens" }),
        error: h("p", { class: "error" }),
      };
      steps.append(h("details", { class: "step", dataset: { step }, open: true },
        h("summary", {}, h("strong", { text: step }), " ", box.state),
        h("small", { text: "inputs" }), box.inputs, h("small", { text: "outputs" }), box.outputs, box.tokens, box.error));
      stepPanels.set(step, box);
    }
    return stepPanels.get(step);
  }

  function stepState(step, state) {
    setNodeState(groups, step, state);
    const box = panel(step);
    box.state.className = `status status-${state}`;
    box.state.textContent = state;
  }

  function show(run) {
    summary.replaceChildren(
      h("dt", { text: "Workflow" }), h("dd", {}, h("a", { href: `#/workflows/${encodeURIComponent(run.workflow)}`, text: run.workflow })),
      h("dt", { text: "Status" }), h("dd", {}, status(run.status)),
      h("dt", { text: "Started" }), h("dd", { text: when(run.created) }),
      h("dt", { text: "Tokens" }), h("dd", { id: "run-tokens", text: tokens(run.usage) }),
      h("dt", { text: "Inputs" }), h("dd", {}, h("code", { text: JSON.stringify(run.inputs) })));
    root.querySelector(".run").dataset.status = run.status;
    outputs.textContent = pretty(run.outputs || {});
    cancel.hidden = !["running", "waiting"].includes(run.status) || (run.status === "waiting" && run.durable);
    errorBox.replaceChildren(...(run.error ? [h("p", { class: "error", id: "run-error-text", text: `${run.error.status}: ${run.error.detail}` })] : []));
    // Kept while the run still waits, so that a refresh does not wipe what the user is typing.
    if (run.status === "waiting" && workflow) {
      if (!waiting.firstChild) showWaiting(run);
    } else {
      waiting.replaceChildren();
    }
    current = run;
  }

  function showWaiting(run) {
    const missing = new Set(Object.keys(workflow.input_schema.properties || {}).filter((n) => !(n in (run.inputs || {}))));
    waiting.replaceChildren(h("div", { class: "waiting card" },
      h("h3", { text: "This run is waiting for input" }),
      run.waiting_for ? h("p", { class: "muted", text: `Waiting at: ${run.waiting_for}` }) : null,
      inputForm(workflow.input_schema, {
        id: "input-form", submitText: "Send input", partial: true, only: missing.size ? missing : null,
        onsubmit: async (values) => {
          show(await api(`/v1/runs/${encodeURIComponent(runId)}/input`, { method: "POST", body: { inputs: values } }));
          waiting.replaceChildren();
          follow();
        },
      })));
  }

  function onEvent(event) {
    if (event.event === "stream_started") return;
    if (event.event === "end") {
      show(JSON.parse(event.data));
      return;
    }
    lastId = Number(event.id) || lastId;
    const data = JSON.parse(event.data);
    if (start === null) start = data.time;
    const top = workflow ? workflow.name : data.path;
    // A nested workflow's events are shown on its step in this graph.
    const nested = data.path !== top && data.path.startsWith(top + "/") ? data.path.slice(top.length + 1).split("/")[0] : null;
    const step = nested || data.step || "";
    if (event.event === "token") {
      panel(step).tokens.textContent += data.text;
      return; // tokens are shown in their step, not one timeline row each
    }
    const duration = data.duration !== undefined ? `${(data.duration * 1000).toFixed(1)} ms` : "";
    timeline.append(h("tr", { class: `event-${event.event}`, dataset: { event: event.event } },
      h("td", { text: (data.time - start).toFixed(3) }),
      h("td", { text: event.event }),
      h("td", { text: nested ? `${nested} › ${data.step || ""}` : step }),
      h("td", { text: duration })));
    if (nested) {
      if (event.event === "run_started") stepState(nested, "running");
      return;
    }
    if (event.event === "step_started") {
      stepState(step, "running");
      panel(step).inputs.textContent = pretty(data.inputs);
    } else if (event.event === "step_finished") {
      stepState(step, "succeeded");
      panel(step).outputs.textContent = pretty(data.outputs);
      for (const e of workflow ? graphEdgesFrom(step) : []) setNodeState(groups, e.target, "succeeded");
    } else if (event.event === "step_failed") {
      stepState(step, "failed");
      panel(step).error.textContent = data.error || "failed";
    } else if (event.event === "run_finished" || event.event === "run_failed") {
      const el = document.getElementById("run-tokens");
      if (el) el.textContent = tokens(data.usage);
      if (event.event === "run_failed") errorBox.replaceChildren(h("p", { class: "error", id: "run-error-text", text: data.error || "the run failed" }));
    } else if (event.event === "run_started") {
      for (const name of Object.keys(data.inputs || {})) setNodeState(groups, `inputs.${name}`, "succeeded");
    }
  }

  let graph = null;
  function graphEdgesFrom(step) {
    return graph ? graph.edges.filter((e) => e.source === step && e.target.startsWith("outputs.")) : [];
  }

  let following = false;
  let current = null;
  // A long-lived run's stream stays open while it waits for more input; a durable run's ends
  // when it waits and is followed again once it is given its input.
  async function follow() {
    if (following) return;
    following = true;
    try {
      for await (const event of events(`/v1/runs/${encodeURIComponent(runId)}/events`, { signal: abort.signal, lastEventId: lastId })) {
        onEvent(event);
      }
    } catch (err) {
      if (err.name !== "AbortError" && !needLogin(err)) errorBox.replaceChildren(h("p", { class: "error", text: explain(err) }));
    } finally {
      following = false;
    }
  }

  // The state of a run in progress (running or waiting, outputs so far) is refreshed now and then.
  const timer = setInterval(async () => {
    if (!current || !["running", "waiting"].includes(current.status)) return;
    try {
      show(await api(`/v1/runs/${encodeURIComponent(runId)}`));
    } catch (_) {
      // the stream reports errors; a missed refresh is retried
    }
  }, 1000);

  async function cancelRun() {
    try {
      show(await api(`/v1/runs/${encodeURIComponent(runId)}/cancel`, { method: "POST" }));
    } catch (err) {
      if (!needLogin(err)) errorBox.replaceChildren(h("p", { class: "error", text: explain(err) }));
    }
  }

  (async () => {
    try {
      const run = await api(`/v1/runs/${encodeURIComponent(runId)}`);
      [workflow, graph] = await Promise.all([
        api(`/v1/workflows/${encodeURIComponent(run.workflow)}`),
        api(`/v1/workflows/${encodeURIComponent(run.workflow)}/graph`),
      ]);
      groups = drawGraph(graph, graphBox);
      for (const n of graph.nodes) if (n.kind === "step") panel(n.id);
      show(run);
      follow();
    } catch (err) {
      if (!needLogin(err)) errorBox.replaceChildren(h("p", { class: "error", text: explain(err) }));
    }
  })();
  return () => {
    clearInterval(timer);
    abort.abort();
  };
}

function tokens(usage) {
  if (!usage || !Object.keys(usage).length) return "—";
  return Object.entries(usage).map(([k, v]) => `${k.replace(/_tokens$/, "")}: ${v}`).join(", ");
}
