// The shell: login when the server wants a key, the header, and the hash routes
// (#/chat[/SESSION], #/runs[/RUN], #/workflows[/NAME]).

import { api, ApiError, apiKey, setApiKey } from "./api.js";
import { h, explain } from "./dom.js";
import { chatView } from "./chat.js";
import { runsView, runView } from "./runs.js";
import { workflowsView, workflowView } from "./workflows.js";

const view = document.getElementById("view");
const banner = document.getElementById("banner");
const logout = document.getElementById("logout");
let cleanup = null;

export const app = { model: null };

export function showBanner(text) {
  banner.textContent = text || "";
  banner.hidden = !text;
}

function loginView(message) {
  const input = h("input", { type: "password", id: "api-key", name: "api-key", autocomplete: "off", placeholder: "nb_…", required: true });
  const error = h("p", { class: "error", id: "login-error", role: "alert" }, message || "");
  const form = h(
    "form",
    { class: "login card", onsubmit: (e) => { e.preventDefault(); login(input.value.trim(), error); } },
    h("h2", { text: "Log in" }),
    h("p", { class: "muted", text: "This server needs an API key (nanobrain keys create NAME --role run). It is kept for this tab only." }),
    h("label", { for: "api-key", text: "API key" }),
    input,
    h("button", { type: "submit", text: "Log in" }),
    error,
  );
  view.replaceChildren(form);
  input.focus();
}

async function login(key, error) {
  setApiKey(key);
  try {
    await start();
  } catch (err) {
    setApiKey("");
    error.textContent = explain(err);
  }
}

/** Check the key (or open mode) by listing models; then show the page the URL names. */
async function start() {
  const models = await api("/v1/models");
  app.model = models.data.length ? models.data[0].id : null;
  logout.hidden = !apiKey();
  showModel();
  if (!location.hash) history.replaceState(null, "", app.model ? "#/chat" : "#/workflows");
  route();
}

/** The chat workflow and the models behind it (from /ready), rechecked while they load. */
async function showModel() {
  const line = document.getElementById("model");
  if (!app.model) {
    line.textContent = "";
    return;
  }
  const ready = await fetch("/ready").then((r) => r.json()).catch(() => ({}));
  const model = ready.checks && ready.checks.model;
  line.textContent = `model: ${app.model}` + (model ? (model.ok ? ` · ${model.detail}` : ` · ${model.detail || "loading"}…`) : "");
  if (model && !model.ok && model.detail === "still loading") setTimeout(showModel, 2000);
}

function route() {
  if (cleanup) cleanup();
  cleanup = null;
  showBanner("");
  const [, section = "chat", ...rest] = location.hash.split("/");
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === section);
  }
  const views = {
    chat: () => chatView(view, arg),
    runs: () => (arg ? runView(view, arg) : runsView(view)),
    workflows: () => (arg ? workflowView(view, arg) : workflowsView(view)),
  };
  cleanup = (views[section] || views.chat)() || null;
}

export function needLogin(err) {
  if (err instanceof ApiError && err.status === 401) {
    setApiKey("");
    loginView(explain(err));
    return true;
  }
  return false;
}

window.addEventListener("hashchange", () => {
  if (document.querySelector(".login")) return; // the login form stays until a key works
  route();
});
logout.addEventListener("click", () => {
  setApiKey("");
  logout.hidden = true;
  loginView("");
});

start().catch((err) => {
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) loginView(apiKey() ? explain(err) : "");
  else view.replaceChildren(h("p", { class: "error", text: explain(err) }));
});
