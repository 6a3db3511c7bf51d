// Drives piagent's /ollama with the `ollama` JavaScript package; prints one JSON
// object of what it saw. Usage: node ollama_client.mjs BASE_URL KEY SCENARIO
// (the package is found through NODE_PATH, set by tests/test_ollama_js.py).
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Ollama } = require("ollama");
const [host, key, scenario] = process.argv.slice(2);
const client = new Ollama({
  host,
  headers: key ? { Authorization: `Bearer ${key}` } : {},
});
const hello = [{ role: "user", content: "hello" }];

async function run() {
  if (scenario === "list") {
    const listed = await client.list();
    const shown = await client.show({ model: "general:latest" });
    return {
      models: listed.models.map((m) => m.name),
      family: listed.models[0].details.family,
      capabilities: shown.capabilities,
    };
  }
  if (scenario === "stream") {
    const parts = [];
    for await (const part of await client.chat({
      model: "general:latest",
      messages: hello,
      stream: true,
    })) {
      parts.push(part);
    }
    const last = parts[parts.length - 1];
    return {
      text: parts.map((p) => p.message.content).join(""),
      done: last.done,
      done_reason: last.done_reason,
      eval_count: last.eval_count,
    };
  }
  if (scenario === "whole") {
    const reply = await client.chat({ model: "general", messages: hello });
    return { text: reply.message.content, done: reply.done };
  }
  throw new Error(`unknown scenario ${scenario}`);
}

run().then(
  (seen) => console.log(JSON.stringify({ ok: true, ...seen })),
  (error) =>
    console.log(
      JSON.stringify({
        ok: false,
        name: error.name,
        message: error.message,
        status: error.status_code ?? null,
      }),
    ),
);
