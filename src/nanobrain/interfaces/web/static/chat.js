// Chat: sessions on the side, the conversation, a composer. Answers stream in as the model
// writes them; Stop (or Esc) cancels the turn, and the server keeps the partial answer marked
// interrupted, as the terminal chat does.

import { api, download, events } from "./api.js";
import { app, needLogin } from "./app.js";
import { h, explain, when } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

export function chatView(root, sessionId) {
  let session = sessionId;
  let turn = null; // the AbortController of the answer streaming in
  const list = h("ul", { class: "sessions", id: "session-list" });
  const log = h("div", { class: "messages", id: "messages", "aria-live": "polite" });
  const input = h("textarea", { id: "prompt", rows: 2, placeholder: "Message… (Enter sends, Shift+Enter new line, Esc stops)", "aria-label": "Message" });
  const sendButton = h("button", { type: "submit", id: "send", text: "Send" });
  const stopButton = h("button", { type: "button", id: "stop", class: "danger", text: "Stop", hidden: true, onclick: () => stop() });
  const exportFormat = h("select", { id: "export-format", "aria-label": "Export format" },
    ["markdown", "json", "jsonl", "csv"].map((f) => h("option", { value: f, text: f })));
  const exportButton = h("button", { type: "button", id: "export", text: "Export", disabled: !session, onclick: () => exportSession() });
  const title = h("h2", { id: "chat-title", text: "New chat" });
  const form = h("form", { class: "composer", onsubmit: (e) => { e.preventDefault(); send(); } }, input, sendButton, stopButton);

  root.replaceChildren(
    h("div", { class: "chat" },
      h("aside", { class: "sidebar" },
        h("button", { type: "button", id: "new-chat", text: "+ New chat", onclick: () => { location.hash = "#/chat"; } }),
        list),
      h("section", { class: "conversation" },
        h("div", { class: "chat-head" }, title, h("span", { class: "tools" }, exportFormat, exportButton)),
        log,
        form)));

  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    } else if (e.key === "Escape") {
      stop();
    }
  });
  const onEscape = (e) => { if (e.key === "Escape") stop(); };
  document.addEventListener("keydown", onEscape);

  function bubble(role, text, { interrupted = false, error = false } = {}) {
    const body = h("div", { class: "body" });
    const node = h("article", { class: `message ${role}`, dataset: { role } },
      h("div", { class: "who", text: role === "user" ? "You" : role === "assistant" ? app.model || "assistant" : role }), body);
    if (error) node.classList.add("failed");
    if (role === "assistant") renderMarkdown(text, body);
    else body.textContent = text;
    if (interrupted) markInterrupted(node);
    log.append(node);
    node.scrollIntoView({ block: "end" });
    return node;
  }

  function markInterrupted(node) {
    node.classList.add("interrupted");
    if (!node.querySelector(".badge")) node.querySelector(".who").append(h("span", { class: "badge", text: "interrupted" }));
  }

  async function loadSessions() {
    try {
      const { sessions } = await api("/v1/sessions?limit=100");
      list.replaceChildren(...sessions.map((s) => h("li", {},
        h("a", { href: `#/chat/${encodeURIComponent(s.id)}`, class: s.id === session ? "current" : "", dataset: { session: s.id } },
          h("span", { class: "title", text: s.title || "Untitled chat" }),
          h("small", { class: "muted", text: `${when(s.updated_at)} · ${s.message_count} messages` })))));
    } catch (err) {
      if (!needLogin(err)) list.replaceChildren(h("li", { class: "error", text: explain(err) }));
    }
  }

  async function loadHistory() {
    if (!session) {
      log.replaceChildren(h("p", { class: "muted empty", text: "Ask anything. Your conversation is saved as a session." }));
      return;
    }
    try {
      const found = await api(`/v1/sessions/${encodeURIComponent(session)}?limit=1000`);
      title.textContent = found.title || "Untitled chat";
      log.replaceChildren();
      for (const m of found.messages) {
        if (m.role !== "user" && m.role !== "assistant") continue;
        if (m.role === "assistant" && !m.content && m.tool_calls.length) continue;
        bubble(m.role, m.content || "", { interrupted: Boolean(m.metadata && m.metadata.interrupted), error: m.is_error });
      }
    } catch (err) {
      if (!needLogin(err)) log.replaceChildren(h("p", { class: "error", text: explain(err) }));
    }
  }

  async function send() {
    const text = input.value;
    if (!text.trim() || turn) return;
    if (!app.model) {
      log.append(h("p", { class: "error", text: "This server does not serve the chat workflow." }));
      return;
    }
    input.value = "";
    log.querySelector(".empty")?.remove();
    bubble("user", text);
    const answer = bubble("assistant", "");
    const body = answer.querySelector(".body");
    answer.classList.add("streaming");
    turn = new AbortController();
    sendButton.hidden = true;
    stopButton.hidden = false;
    let reply = "";
    try {
      const request = { model: app.model, messages: [{ role: "user", content: text }], stream: true };
      if (session) request.session_id = session;
      for await (const event of events("/v1/chat/completions", { method: "POST", body: request, signal: turn.signal })) {
        if (event.data === "[DONE]") break;
        const chunk = JSON.parse(event.data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.session_id && chunk.session_id !== session) {
          session = chunk.session_id;
          history.replaceState(null, "", `#/chat/${encodeURIComponent(session)}`);
          exportButton.disabled = false;
          title.textContent = text.length > 60 ? text.slice(0, 59) + "…" : text;
        }
        const delta = chunk.choices && chunk.choices[0] ? chunk.choices[0].delta.content : "";
        if (delta) {
          reply += delta;
          renderMarkdown(reply, body);
          answer.scrollIntoView({ block: "end" });
        }
      }
    } catch (err) {
      if (err.name === "AbortError") {
        markInterrupted(answer);
      } else if (!needLogin(err)) {
        answer.classList.add("failed");
        answer.append(h("p", { class: "error", text: explain(err) }));
      }
    } finally {
      answer.classList.remove("streaming");
      answer.dataset.done = "true";
      turn = null;
      sendButton.hidden = false;
      stopButton.hidden = true;
      input.focus();
      loadSessions();
    }
  }

  function stop() {
    if (turn) turn.abort();
  }

  async function exportSession() {
    if (!session) return;
    const format = exportFormat.value;
    try {
      await download(`/v1/sessions/${encodeURIComponent(session)}/export?format=${format}`, `session.${format}`);
    } catch (err) {
      if (!needLogin(err)) log.append(h("p", { class: "error", text: explain(err) }));
    }
  }

  loadSessions();
  loadHistory();
  input.focus();
  return () => {
    stop();
    document.removeEventListener("keydown", onEscape);
  };
}
