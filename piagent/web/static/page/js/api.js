// piagent's API as the page uses it: the key, errors in words, the SSE stream.

const KEY = "piagent.apiKey";

export const apiKey = {
  get: () => localStorage.getItem(KEY) || "",
  set: (value) => localStorage.setItem(KEY, value),
  forget: () => localStorage.removeItem(KEY),
};

/** A failed call: the status (0: no answer at all), the server's detail, and
 * the seconds to wait from Retry-After, if it said. */
export class ApiError extends Error {
  constructor(status, detail, retryAfter = null) {
    super(describe(status, detail));
    this.status = status;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }
}

function detailText(detail) {
  if (Array.isArray(detail)) {
    return detail.map((item) => (item && item.msg) || JSON.stringify(item)).join("; ");
  }
  return detail == null ? "" : String(detail);
}

/** What went wrong, in words, with the server's own detail. */
export function describe(status, detail) {
  const said = detailText(detail);
  const more = said ? ` (${said})` : "";
  switch (status) {
    case -1:
      return "The reply was cut off before its end: the connection or the server broke.";
    case 0:
      return `Cannot reach piagent: the network is down or the server stopped${more}.`;
    case 401:
      return `piagent needs a valid API key${more}.`;
    case 413:
    case 422:
      return `The server refused the message${more}.`;
    case 429:
      return `Too many requests: the rate limit is used up${more}.`;
    case 502:
      return `The model server is not answering${more}.`;
    case 503:
      return `piagent is busy${more}.`;
    case 504:
      return `The model took too long to answer${more}.`;
    default:
      return `The server answered ${status}${more}.`;
  }
}

function headers(extra) {
  const out = { Accept: "application/json", ...extra };
  const key = apiKey.get();
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

async function failure(response) {
  let detail = null;
  try {
    detail = (await response.json()).detail;
  } catch {
    detail = response.statusText;
  }
  const retry = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return new ApiError(response.status, detail, Number.isFinite(retry) ? retry : null);
}

async function call(method, path, options = {}) {
  let response;
  try {
    response = await fetch(path, { method, headers: headers(options.headers), ...options.init });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, null);
  }
  if (!response.ok) throw await failure(response);
  return response;
}

export async function listAgents() {
  return (await (await call("GET", "/agents")).json()).agents;
}

export async function readConversation(id) {
  return (await call("GET", `/conversations/${encodeURIComponent(id)}`)).json();
}

export async function forgetConversation(id) {
  await call("DELETE", `/conversations/${encodeURIComponent(id)}`);
}

/** Split SSE text into events; returns [events, the unfinished rest].
 * Comments (": ping") are dropped; an event is {event, data}. */
export function parseSSE(buffer) {
  const events = [];
  const blocks = buffer.split(/\r?\n\r?\n/);
  const rest = blocks.pop();
  for (const block of blocks) {
    let name = "message";
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
    }
    if (data.length) events.push({ event: name, data: data.join("\n") });
  }
  return [events, rest];
}

/** POST /chat as SSE. Calls onStart(conversationId) once the 200 arrived,
 * onTokens(texts) per read, and resolves with the `done` event's data.
 * Rejects with an ApiError (an `error` event, a cut stream, no network) or
 * the AbortError of `signal`. */
export async function streamChat({ message, agent, conversationId, signal, onStart, onTokens }) {
  const body = { message, agent, stream: true };
  if (conversationId) body.conversation_id = conversationId;
  const response = await call("POST", "/chat", {
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    init: { body: JSON.stringify(body), signal },
  });
  onStart(response.headers.get("X-Conversation-Id"));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "the connection broke during the reply");
    }
    if (chunk.done) break;
    const [events, rest] = parseSSE(buffer + chunk.value);
    buffer = rest;
    const texts = [];
    for (const item of events) {
      const data = JSON.parse(item.data);
      if (item.event === "token") texts.push(data.text);
      else if (item.event === "done") {
        if (texts.length) onTokens(texts);
        return data;
      } else if (item.event === "error") {
        if (texts.length) onTokens(texts);
        throw new ApiError(data.status, data.detail);
      }
    }
    if (texts.length) onTokens(texts);
  }
  throw new ApiError(-1, "the reply was cut off before its end");
}
