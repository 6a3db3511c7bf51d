"""Fake OpenAI-compatible server on loopback: SSE chat completions, with faults.

Usage:
    python -m tests.support.fake_openai [--port 8080] [--tokens N] [--delay S]
        [--first-delay S] [--fault NAME] [--fault-after N] [--models a,b]

    with FakeOpenAI() as fake:                      # in tests
        fake.behaviour = Behaviour(delay=0.05, fault="error_line")
        ...PROVIDER=openai OPENAI_BASE_URL=fake.url + "/v1"...

It shares the fake Ollama's machinery (behaviours, faults, disconnect records)
and speaks like llama-server: POST /v1/chat/completions streams
`data: {chat.completion.chunk}` events and `data: [DONE]`, with a usage chunk
when `stream_options.include_usage` is set; GET /v1/models lists
`behaviour.models`. A reply longer than max_tokens is cut there with
finish_reason "length". Prompts go through the same prompt-cache model as the
fake Ollama's: usage says `prompt_tokens` (the whole prompt) and
`prompt_tokens_details.cached_tokens`, and the last chunk carries llama-server's
`timings` (`cache_n`, `prompt_n`). Faults map as for Ollama: error_first and
error_line are a `data: {"error": ...}` event, no_done leaves out
`data: [DONE]`, status_* and an unknown model answer OpenAI's error shape.
With `api_key` set, requests without `Authorization: Bearer <key>` get a 401.
Scripted replies (`behaviour.script`, as for the fake Ollama): a step's calls
stream as OpenAI does, after its text: a first delta per call with its index,
id, type and name, then its arguments in pieces of a few characters, then
`finish_reason: "tool_calls"`. A step's thinking comes first, as llama-server
sends it: deltas with `reasoning_content`.
"""

import json
from typing import Any

from bench.prefix_cache import prompt_tokens
from tests.support.fake_ollama import (
    MALFORMED_LINE,
    MID_FAULTS,
    RUN_ERROR,
    STATUS_ERRORS,
    Behaviour,
    FakeOllama,
    Step,
    _dumps,
    _Handler,
    arguments,
    serve,
)

CREATED = 1_700_000_000


def _error_body(message: str, kind: str, code: str | None = None) -> bytes:
    error = {"message": message, "type": kind, "param": None, "code": code}
    return _dumps({"error": error})


class _OpenAIHandler(_Handler):
    fake: "FakeOpenAI"

    def _sent_back(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return calls  # a client sends OpenAI's calls back as they came

    def _authorized(self) -> bool:
        key = self.fake.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._send(401, _error_body("Invalid API Key", "authentication_error"))
        return False

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path != "/v1/models":
            return self._send(404, _error_body("not found", "not_found_error"))
        if not self._authorized():
            return None
        data = [
            {"id": m, "object": "model", "created": CREATED, "owned_by": "fake"}
            for m in self.fake.behaviour.models
        ]
        self._send(200, _dumps({"object": "list", "data": data}))

    do_HEAD = do_GET

    def _event(self, item: Any) -> None:
        data = item if isinstance(item, bytes) else _dumps(item)
        self._chunk(b"data: " + data + b"\n\n")

    def _post(self, b: Behaviour) -> None:
        _, req = self._read_request()
        if self.path != "/v1/chat/completions":
            return self._send(404, _error_body("not found", "not_found_error"))
        if not self._authorized():
            return None
        if b.fault == "drop_before":
            return self._drop()
        if b.fault == "hang":
            self._pause(60.0)
            return self._drop()
        self._pause(b.first_delay)
        if not isinstance(req, dict) or not isinstance(req.get("messages"), list):
            return self._send(400, _error_body("invalid body", "invalid_request_error"))
        model = req.get("model")
        if model not in b.models:
            message = f"The model `{model}` does not exist"
            body = _error_body(message, "invalid_request_error", "model_not_found")
            return self._send(404, body)
        if b.fault in STATUS_ERRORS:
            status, message = STATUS_ERRORS[b.fault]
            return self._send(status, _error_body(message, "server_error"))
        tokens, fault = list(b.tokens), b.fault
        step: Step | None = self._step
        calls = openai_calls(step.calls) if step is not None else []
        if step is not None:
            tokens = list(step.text)
        if b.echo:
            tokens.insert(0, str(req["messages"][-1].get("content")) + "|")
        limit, reason = req.get("max_tokens"), "stop"
        if isinstance(limit, int) and 0 < limit < len(tokens):
            tokens, reason = tokens[:limit], "length"
        messages = [m for m in req["messages"] if isinstance(m, dict)]
        prompt = prompt_tokens(messages)
        cost = self.fake.prompt_cache.evaluate(prompt)
        self.fake._evaluated(cost)
        self._generation = (cost, prompt, tokens)
        self._calls = calls
        self._pause(b.prompt_cost * cost.evaluated)
        # As llama-server counts: the whole prompt, and the part from its cache.
        usage: dict[str, Any] = {
            "prompt_tokens": cost.total,
            "prompt_tokens_details": {"cached_tokens": cost.cached},
        }
        timings = {"cache_n": cost.cached, "prompt_n": cost.evaluated}

        def chunk(delta: dict, finish: str | None = None) -> dict:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "choices": [choice],
            }

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if fault == "error_first":
            self._event(_error_body(RUN_ERROR, "server_error"))
            return self._chunk(b"")
        self._event(chunk({"role": "assistant", "content": None}))
        for thought in step.thinking if step is not None else ():
            self._event(chunk({"reasoning_content": thought}))
        for token in tokens[: b.fault_after] if fault in MID_FAULTS else tokens:
            self._pause(b.delay if self._sent else 0.0)
            self._event(chunk({"content": token}))
            self._sent += 1
        if calls and fault not in MID_FAULTS:
            for index, call in enumerate(calls):
                self._pause(b.delay if self._sent else 0.0)
                function = call["function"]
                named = {"name": function["name"], "arguments": ""}
                first = {**call, "function": named}
                self._event(chunk({"tool_calls": [{"index": index, **first}]}))
                text = function["arguments"]
                for at in range(0, len(text), 5):
                    piece = {"arguments": text[at : at + 5]}
                    delta = {"tool_calls": [{"index": index, "function": piece}]}
                    self._event(chunk(delta))
            self._calls_sent = True
            reason = "tool_calls"
        self._pause(b.delay if self._sent else 0.0)
        if fault == "hang_mid":
            self._pause(60.0)
        if fault in ("hang_mid", "drop"):
            return self._drop()
        if fault == "error_line":
            self._event(_error_body(RUN_ERROR, "server_error"))
        elif fault == "malformed_line":
            self._chunk(b"data: " + MALFORMED_LINE + b"\n")
        else:
            # llama-server puts its timings on the last chunk before [DONE].
            finish = chunk({}, reason)
            timings.update(predicted_n=self._sent)
            if (req.get("stream_options") or {}).get("include_usage"):
                self._event(finish)
                usage.update(completion_tokens=self._sent)
                usage["total_tokens"] = usage["prompt_tokens"] + self._sent
                final = chunk({})
                final.update(choices=[], usage=usage, timings=timings)
                self._event(final)
            else:
                self._event({**finish, "timings": timings})
            if fault != "no_done":
                self._event(b"[DONE]")
        self._chunk(b"")


def openai_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scripted calls as OpenAI's message.tool_calls (arguments as JSON text)."""
    wire = []
    for index, call in enumerate(calls):
        arguments = call.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        wire.append(
            {
                "id": call.get("id", f"call_fake{index}"),
                "type": "function",
                "function": {"name": call["name"], "arguments": arguments},
            }
        )
    return wire


class FakeOpenAI(FakeOllama):
    handler = _OpenAIHandler

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.api_key: str | None = None

    def reset(self) -> None:
        super().reset()
        self.api_key = None


def main(argv: list[str] | None = None) -> None:
    parser = arguments(
        "python -m tests.support.fake_openai",
        "Serve a fake OpenAI-compatible server (/v1/chat/completions, /v1/models).",
        8080,
        "qwen2.5-3b-instruct",
    )
    banner = "fake OpenAI-compatible server on {url}/v1"
    serve(FakeOpenAI, parser.parse_args(argv), banner)


if __name__ == "__main__":
    main()
