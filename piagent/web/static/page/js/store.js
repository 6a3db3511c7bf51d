// This browser's conversations: ids and titles in localStorage, newest first.
// The messages themselves stay on the server (GET /conversations/<id>).

const KEY = "piagent.conversations";
const MAX = 50;
const TITLE_CHARS = 60;

function load() {
  try {
    const items = JSON.parse(localStorage.getItem(KEY) || "[]");
    return Array.isArray(items) ? items.filter((item) => item && typeof item.id === "string") : [];
  } catch {
    return [];
  }
}

function save(items) {
  localStorage.setItem(KEY, JSON.stringify(items.slice(0, MAX)));
}

function title(message) {
  const line = message.trim().replace(/\s+/g, " ");
  return line.length > TITLE_CHARS ? `${line.slice(0, TITLE_CHARS - 1)}…` : line;
}

export const conversations = {
  all: () => load().sort((a, b) => b.at - a.at),
  add(id, firstMessage, agent) {
    const items = load().filter((item) => item.id !== id);
    items.unshift({ id, title: title(firstMessage), agent, at: Date.now() });
    save(items.sort((a, b) => b.at - a.at));
  },
  touch(id) {
    const items = load();
    const found = items.find((item) => item.id === id);
    if (found) found.at = Date.now();
    save(items.sort((a, b) => b.at - a.at));
  },
  remove(id) {
    save(load().filter((item) => item.id !== id));
  },
};
