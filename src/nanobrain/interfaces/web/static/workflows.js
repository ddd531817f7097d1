// Workflows: the served ones, and for one its graph and a form generated from its input
// JSON Schema that starts a run and opens it in the run view.

import { api, ApiError } from "./api.js";
import { needLogin } from "./app.js";
import { h, explain } from "./dom.js";
import { drawGraph } from "./graph.js";

export function workflowsView(root) {
  const list = h("div", { class: "cards", id: "workflows" });
  root.replaceChildren(h("section", {}, h("h2", { text: "Workflows" }), list));
  api("/v1/workflows").then(({ workflows }) => {
    list.replaceChildren(...workflows.map((w) => h("a", { class: "card workflow", href: `#/workflows/${encodeURIComponent(w.name)}`, dataset: { workflow: w.name } },
      h("strong", { text: w.name }),
      h("p", { class: "muted", text: w.description || "" }),
      h("small", { text: "inputs: " + (Object.keys(w.input_schema.properties || {}).join(", ") || "none") }))));
  }).catch((err) => { if (!needLogin(err)) list.replaceChildren(h("p", { class: "error", text: explain(err) })); });
}

export function workflowView(root, name) {
  const graphBox = h("div", { class: "graph-box", id: "workflow-graph" });
  const formBox = h("div", { id: "workflow-form" });
  root.replaceChildren(h("section", { class: "card" },
    h("h2", { text: name }), h("p", { class: "muted", id: "workflow-description" }), graphBox, h("h3", { text: "Start a run" }), formBox));
  (async () => {
    try {
      const [workflow, graph] = await Promise.all([
        api(`/v1/workflows/${encodeURIComponent(name)}`),
        api(`/v1/workflows/${encodeURIComponent(name)}/graph`),
      ]);
      root.querySelector("#workflow-description").textContent = workflow.description || "";
      drawGraph(graph, graphBox);
      const durable = h("input", { type: "checkbox", id: "durable", name: "durable" });
      const mode = h("select", { id: "run-mode", name: "mode" },
        h("option", { value: "background", text: "run once" }),
        h("option", { value: "long_lived", text: "long-lived: keep taking input" }));
      formBox.replaceChildren(inputForm(workflow.input_schema, {
        id: "run-form",
        submitText: "Start run",
        partial: () => durable.checked || mode.value === "long_lived",
        extra: h("div", { class: "field" },
          h("label", { for: "run-mode", text: "Mode" }), mode,
          h("label", { class: "inline", for: "durable" }, durable, " durable: inputs left empty are waited for")),
        onsubmit: async (values) => {
          const run = await api(`/v1/workflows/${encodeURIComponent(name)}/runs`, {
            method: "POST", body: { inputs: values, mode: mode.value, durable: durable.checked },
          });
          location.hash = `#/runs/${encodeURIComponent(run.run_id)}`;
        },
      }));
    } catch (err) {
      if (!needLogin(err)) formBox.replaceChildren(h("p", { class: "error", text: explain(err) }));
    }
  })();
}

function fieldFor(name, schema, required) {
  const type = schema.type || (schema.anyOf ? (schema.anyOf.find((s) => s.type !== "null") || {}).type : undefined);
  const id = `input-${name}`;
  let control;
  if (schema.enum) {
    control = h("select", { id, name }, schema.enum.map((v) => h("option", { value: JSON.stringify(v), text: String(v) })));
    control.dataset.kind = "json";
  } else if (type === "boolean") {
    control = h("input", { type: "checkbox", id, name });
    control.dataset.kind = "boolean";
  } else if (type === "integer" || type === "number") {
    control = h("input", { type: "number", id, name, step: type === "integer" ? "1" : "any" });
    control.dataset.kind = type;
  } else if (type === "string") {
    control = h("textarea", { id, name, rows: 2 });
    control.dataset.kind = "string";
  } else {
    control = h("textarea", { id, name, rows: 3, placeholder: "JSON" });
    control.dataset.kind = "json";
  }
  if (schema.default !== undefined) {
    if (control.type === "checkbox") control.checked = Boolean(schema.default);
    else control.value = typeof schema.default === "string" || control.dataset.kind !== "json" ? String(schema.default) : JSON.stringify(schema.default);
  }
  const label = h("label", { for: id }, schema.title || name, required ? h("span", { class: "required", title: "required", text: " *" }) : null,
    h("small", { class: "muted", text: ` ${type || "any"}` }));
  const error = h("span", { class: "error field-error", dataset: { field: `inputs.${name}` } });
  return { row: h("div", { class: "field" }, label, control, schema.description ? h("small", { class: "muted", text: schema.description }) : null, error), control, error };
}

/** A form for an object JSON Schema; `onsubmit(values)` gets the typed values of the filled fields. */
export function inputForm(schema, { id, submitText, onsubmit, partial = false, only = null, extra = null }) {
  const required = new Set(schema.required || []);
  const fields = new Map();
  const problem = h("p", { class: "error", role: "alert" });
  // The server checks values against the schema and names each bad field: one place for errors.
  const form = h("form", { id, class: "input-form", novalidate: true });
  for (const [name, property] of Object.entries(schema.properties || {})) {
    if (only && !only.has(name)) continue;
    const field = fieldFor(name, property, required.has(name));
    fields.set(name, field);
    form.append(field.row);
  }
  if (extra) form.append(extra);
  const submit = h("button", { type: "submit", text: submitText });
  form.append(submit, problem);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    problem.textContent = "";
    const values = {};
    const loose = typeof partial === "function" ? partial() : partial;
    for (const [name, { control, error }] of fields) {
      error.textContent = "";
      const kind = control.dataset.kind;
      if (kind === "boolean") {
        values[name] = control.checked;
        continue;
      }
      const raw = control.value;
      if (raw === "") {
        if (required.has(name) && !loose) error.textContent = "required";
        continue;
      }
      if (kind === "integer" || kind === "number") values[name] = Number(raw);
      else if (kind === "string") values[name] = raw;
      else {
        try {
          values[name] = JSON.parse(raw);
        } catch (_) {
          error.textContent = "not valid JSON";
        }
      }
    }
    if (form.querySelector(".field-error:not(:empty)")) return;
    submit.disabled = true;
    try {
      await onsubmit(values);
    } catch (err) {
      if (needLogin(err)) return;
      problem.textContent = explain(err);
      if (err instanceof ApiError) {
        for (const [field, message] of Object.entries(err.fields)) {
          const slot = form.querySelector(`[data-field="${CSS.escape(field)}"]`);
          if (slot) slot.textContent = message;
        }
      }
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
