// Talking to the server: JSON requests with the tab's API key, problem+json errors, and
// Server-Sent Events read from fetch (EventSource cannot send an Authorization header).

const KEY = "nanobrain.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail);
    this.status = status;
    this.body = body || {};
  }
  /** Field errors by name (`inputs.b` -> message), from the problem's `errors`. */
  get fields() {
    const found = {};
    for (const e of this.body.errors || []) found[e.field] = e.message;
    return found;
  }
}

function headers(json, extra) {
  const h = { Accept: "application/json", ...extra };
  if (json) h["Content-Type"] = "application/json";
  const key = apiKey();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function problem(response) {
  let detail = response.statusText || "request failed";
  let body = null;
  try {
    body = await response.json();
    detail = body.detail || (body.error && body.error.message) || detail;
  } catch (_) {
    // not JSON: keep the status text
  }
  return new ApiError(response.status, detail, body);
}

async function send(path, { method = "GET", body, signal, extra } = {}) {
  const json = body !== undefined;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(json, extra),
      body: json ? JSON.stringify(body) : undefined,
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "the server cannot be reached: " + err.message);
  }
  if (!response.ok) throw await problem(response);
  return response;
}

export async function api(path, options) {
  const response = await send(path, options);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export async function download(path, fallbackName) {
  const response = await send(path);
  const blob = await response.blob();
  const match = /filename="([^"]+)"/.exec(response.headers.get("content-disposition") || "");
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = match ? match[1] : fallbackName;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

/** Yields {event, id, data} for each Server-Sent Event of a request. */
export async function* events(path, { method = "GET", body, signal, lastEventId } = {}) {
  const extra = { Accept: "text/event-stream" };
  if (lastEventId) extra["Last-Event-ID"] = String(lastEventId);
  const response = await send(path, { method, body, signal, extra });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (event) yield event;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function parseEvent(raw) {
  let event = "message";
  let id = null;
  const data = [];
  for (const line of raw.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  return data.length ? { event, id, data: data.join("\n") } : null;
}
