// The chat page: agents, a streamed reply, Stop, this browser's conversations.
import {
  ApiError,
  apiKey,
  forgetConversation,
  listAgents,
  readConversation,
  streamChat,
} from "./api.js";
import { renderMarkdown } from "./markdown.js";
import { conversations } from "./store.js";

const $ = (id) => document.getElementById(id);
const ui = {
  agent: $("agent"),
  transcript: $("transcript"),
  empty: $("empty"),
  alert: $("alert"),
  composer: $("composer"),
  message: $("message"),
  send: $("send"),
  stop: $("stop"),
  list: $("conversations"),
  sidebar: $("sidebar"),
  toggleList: $("toggle-list"),
  newConversation: $("new-conversation"),
  keyNote: $("key-note"),
  forgetKey: $("forget-key"),
  keyDialog: $("key-dialog"),
  keyForm: $("key-form"),
  keyInput: $("key-input"),
  keyReason: $("key-reason"),
  keyCancel: $("key-cancel"),
};

const state = { conversationId: null, controller: null, countdown: null };

// --- Errors, in words, with a live Retry-After countdown ------------------

function showAlert(text, retryAfter = null) {
  clearInterval(state.countdown);
  state.countdown = null;
  ui.alert.hidden = false;
  ui.alert.textContent = text;
  if (retryAfter == null) return;
  let left = retryAfter;
  const tick = () => {
    ui.alert.textContent = left > 0 ? `${text} Try again in ${left} s.` : `${text} You can try again now.`;
    if (left <= 0) clearInterval(state.countdown);
    left -= 1;
  };
  tick();
  state.countdown = setInterval(tick, 1000);
}

function clearAlert() {
  clearInterval(state.countdown);
  state.countdown = null;
  ui.alert.hidden = true;
  ui.alert.textContent = "";
}

// --- The API key: asked when a call answers 401 ----------------------------

function askForKey(reason) {
  ui.keyReason.textContent = reason;
  ui.keyInput.value = "";
  if (!ui.keyDialog.open) ui.keyDialog.showModal();
  return new Promise((resolve) => {
    const done = (value) => {
      ui.keyForm.onsubmit = null;
      ui.keyCancel.onclick = null;
      ui.keyDialog.onclose = null;
      if (ui.keyDialog.open) ui.keyDialog.close();
      resolve(value);
    };
    ui.keyForm.onsubmit = (event) => {
      event.preventDefault();
      const key = ui.keyInput.value.trim();
      if (key) done(key);
    };
    ui.keyCancel.onclick = () => done(null);
    ui.keyDialog.onclose = () => done(null);
  });
}

function showKeyNote() {
  ui.keyNote.hidden = !apiKey.get();
}

/** Run `action`; on a 401 ask for a key and try again until it works or the
 * person cancels (then the 401 is shown like any error). */
async function withKey(action) {
  for (;;) {
    try {
      return await action();
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) throw error;
      const wrong = apiKey.get() !== "";
      const key = await askForKey(
        wrong ? "That API key was refused; try another." : "This piagent asks for an API key.",
      );
      if (key === null) throw error;
      apiKey.set(key);
      showKeyNote();
    }
  }
}

// --- The transcript ---------------------------------------------------------

// What the person and the agent said: a tool agent's calls and their results
// (assistant messages without text, "tool" messages) are its work, not the
// conversation's text, and are not shown live either.
function said(m) {
  return m.role === "user" || (m.role === "assistant" && m.content !== "");
}

function addMessage(role, text) {
  ui.empty.hidden = true;
  const box = document.createElement("div");
  box.className = `message ${role}`;
  const who = document.createElement("div");
  who.className = "who";
  who.textContent = role === "user" ? "You" : ui.agent.value || "assistant";
  const body = document.createElement("div");
  body.className = "body";
  if (role === "user") body.textContent = text;
  else body.append(renderMarkdown(text));
  box.append(who, body);
  ui.transcript.append(box);
  scrollDown();
  return box;
}

function addNote(box, className, text) {
  const note = document.createElement("div");
  note.className = className;
  note.textContent = text;
  box.append(note);
  scrollDown();
}

function scrollDown() {
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
}

function clearTranscript() {
  for (const node of [...ui.transcript.children]) if (node !== ui.empty) node.remove();
  ui.empty.hidden = false;
}

/** A reply growing token by token: rendered again at most once an animation
 * frame, so a long reply costs one parse a frame, not one per token. */
function liveReply(box) {
  const body = box.querySelector(".body");
  let text = "";
  let frame = 0;
  const render = () => {
    frame = 0;
    body.replaceChildren(renderMarkdown(text));
    scrollDown();
  };
  return {
    add(texts) {
      text += texts.join("");
      if (!frame) frame = requestAnimationFrame(render);
    },
    finish() {
      if (frame) cancelAnimationFrame(frame);
      render();
      return text;
    },
  };
}

function usageLine(usage) {
  if (!usage) return "";
  const parts = [];
  if (usage.ttft_s != null) parts.push(`first token after ${usage.ttft_s.toFixed(2)} s`);
  if (usage.tokens_per_s != null) parts.push(`${usage.tokens_per_s.toFixed(1)} tokens/s`);
  const count = (n, what) => `${n} ${what} token${n === 1 ? "" : "s"}`;
  if (usage.prompt_tokens != null) parts.push(count(usage.prompt_tokens, "prompt"));
  if (usage.reply_tokens != null) parts.push(count(usage.reply_tokens, "reply"));
  return parts.join(" · ");
}

// --- Sending, stopping ------------------------------------------------------

function busy(on) {
  ui.send.disabled = on;
  ui.stop.disabled = !on;
}

async function send() {
  const message = ui.message.value;
  if (!message.trim() || state.controller) return;
  clearAlert();
  ui.message.value = "";
  const asked = addMessage("user", message);
  const box = addMessage("assistant", "");
  const reply = liveReply(box);
  const controller = new AbortController();
  state.controller = controller;
  busy(true);
  try {
    const done = await withKey(() =>
      streamChat({
        message,
        agent: ui.agent.value,
        conversationId: state.conversationId,
        signal: controller.signal,
        onStart: (id) => remember(id, message),
        onTokens: (texts) => reply.add(texts),
      }),
    );
    reply.finish();
    addNote(box, "usage", usageLine(done.usage));
  } catch (error) {
    const text = reply.finish();
    if (error.name === "AbortError") {
      addNote(box, "status", text ? "Stopped; the part above is kept." : "Stopped.");
    } else if (text) {
      addNote(box, "status", "The reply ended early; the part above is kept.");
      showAlert(error.message, error.retryAfter ?? null);
    } else {
      // Nothing came back: the message was not taken. Give it back to send again.
      asked.remove();
      box.remove();
      if (!ui.transcript.querySelector(".message")) ui.empty.hidden = false;
      if (!ui.message.value) ui.message.value = message;
      showAlert(error.message, error.retryAfter ?? null);
    }
  } finally {
    state.controller = null;
    busy(false);
    renderList();
  }
}

function remember(id, message) {
  if (!id) return;
  if (id !== state.conversationId) {
    state.conversationId = id;
    conversations.add(id, message, ui.agent.value);
  } else {
    conversations.touch(id);
  }
  renderList();
}

// --- This browser's conversations ------------------------------------------

function renderList() {
  const items = conversations.all().map((item) => {
    const li = document.createElement("li");
    if (item.id === state.conversationId) li.className = "current";
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    open.textContent = item.title;
    open.title = item.title;
    open.addEventListener("click", () => reopen(item));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "delete";
    remove.textContent = "✕";
    remove.setAttribute("aria-label", `Delete conversation: ${item.title}`);
    remove.addEventListener("click", () => forget(item));
    li.append(open, remove);
    return li;
  });
  ui.list.replaceChildren(...items);
}

async function reopen(item) {
  if (state.controller) return;
  clearAlert();
  closeList();
  try {
    const found = await withKey(() => readConversation(item.id));
    state.conversationId = item.id;
    if (item.agent && [...ui.agent.options].some((o) => o.value === item.agent)) {
      ui.agent.value = item.agent;
    }
    clearTranscript();
    for (const m of found.messages.filter(said)) addMessage(m.role, m.content);
    renderList();
    ui.message.focus();
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      conversations.remove(item.id);
      renderList();
      showAlert("That conversation is no longer on the server (it expired or was forgotten).");
    } else {
      showAlert(error.message, error.retryAfter ?? null);
    }
  }
}

async function forget(item) {
  clearAlert();
  try {
    await withKey(() => forgetConversation(item.id));
    conversations.remove(item.id);
    if (item.id === state.conversationId) newConversation();
    renderList();
  } catch (error) {
    showAlert(error.message, error.retryAfter ?? null);
  }
}

function newConversation() {
  if (state.controller) state.controller.abort();
  state.conversationId = null;
  clearTranscript();
  clearAlert();
  renderList();
  closeList();
  ui.message.focus();
}

function closeList() {
  ui.sidebar.classList.remove("open");
  ui.toggleList.setAttribute("aria-expanded", "false");
}

// --- Start ------------------------------------------------------------------

async function loadAgents() {
  try {
    const names = await withKey(listAgents);
    const options = names.map((name) => new Option(name, name));
    ui.agent.replaceChildren(...options);
    if (names.includes("general")) ui.agent.value = "general";
  } catch (error) {
    showAlert(error.message, error.retryAfter ?? null);
  }
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
ui.message.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
ui.stop.addEventListener("click", () => state.controller && state.controller.abort());
ui.newConversation.addEventListener("click", newConversation);
ui.forgetKey.addEventListener("click", () => {
  apiKey.forget();
  showKeyNote();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && ui.sidebar.classList.contains("open")) {
    closeList();
    ui.toggleList.focus();
  }
});
ui.toggleList.addEventListener("click", () => {
  const open = ui.sidebar.classList.toggle("open");
  ui.toggleList.setAttribute("aria-expanded", String(open));
});

showKeyNote();
renderList();
busy(false);
loadAgents();
// Not on a touch screen: focusing there would pop the keyboard up at once.
if (matchMedia("(pointer: fine)").matches) ui.message.focus();
