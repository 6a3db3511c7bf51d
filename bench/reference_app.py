"""The straightforward proxy piagent's targets were calibrated against.

Why it is in the bench: the targets came from this app measured on another
machine (about 1.3 ms CPU per JSON request, 12 µs per streamed token, 72 MB
idle), and a shared VM runs two or three times slower from one day to the next.
The ``reference`` figure runs it next to piagent so a result can be read as
"piagent ÷ straightforward" on the same machine. It is written the way one would
write it first: a module-level Session, no memory, no validation beyond the
basics. Run: ``gunicorn -k gevent -w 1 --worker-connections 1000
bench.reference_app:app`` with ``OLLAMA_HOST`` and ``OLLAMA_MODEL`` set.
"""

import json
import os

import requests
from flask import Flask, Response, jsonify, request

OLLAMA_HOST = os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434")
MODEL = os.environ.get("OLLAMA_MODEL", "llama3.2")
SYSTEM_PROMPT = "You are a helpful assistant. Answer clearly and concisely."

app = Flask(__name__)
session = requests.Session()


@app.get("/health")
def health():
    return jsonify({"status": "ok"})


@app.post("/chat")
def chat():
    data = request.get_json(silent=True) or {}
    message = data.get("message")
    if not isinstance(message, str) or not message:
        return jsonify({"error": "message is required"}), 400
    payload = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": message},
        ],
        "stream": True,
    }
    upstream = session.post(
        f"{OLLAMA_HOST}/api/chat", json=payload, stream=True, timeout=120
    )
    if upstream.status_code != 200:
        upstream.close()
        return jsonify({"error": f"ollama answered {upstream.status_code}"}), 502

    if not data.get("stream"):
        lines = [json.loads(line) for line in upstream.iter_lines() if line]
        return jsonify({"reply": "".join(x["message"]["content"] for x in lines)})

    def generate():
        with upstream:
            # chunk_size=None: each line as it arrives, not 512-byte reads.
            for line in upstream.iter_lines(chunk_size=None):
                if line:
                    yield json.loads(line)["message"]["content"].encode()

    return Response(generate(), mimetype="text/plain")
