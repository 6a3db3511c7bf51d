"""Fake Ollama on loopback that speaks Ollama's HTTP API and misbehaves on request.

Usage:
    python -m tests.support.fake_ollama [--host 127.0.0.1] [--port 11434] [--tokens N]
        [--delay S] [--first-delay S] [--fault NAME] [--fault-after N]
        [--models a,b]

    with FakeOllama() as fake:                      # in tests
        fake.behaviour = Behaviour(delay=0.05, fault="drop")
        ...point piagent at fake.url...; fake.wait_for_disconnect(2.0)

A reply longer than options.num_predict is cut there, with done_reason "length".
Scripted replies: `behaviour.script` is a queue of Step(text, calls); each chat
request takes the first (then the default tokens again once it is empty), and
a step's `calls` come after its text as one line with `message.tool_calls`
(arguments as objects, as Ollama sends them; a string is sent as it is, to
play a broken server). `requests` records every body, tool messages included.
Chat prompts go through a deterministic prompt-cache model (bench.prefix_cache,
one slot): the final line reports the whole prompt as prompt_eval_count and the
reused part as prompt_eval_cached_count, as Ollama 0.30+ does, and
`prompt_cost` delays the first token per token the model had to read.
POST /api/show answers a few of Ollama's fields for a listed model.
Order on POST /api/chat and /api/generate: the body is read and recorded, then
drop_before, hang, first_delay, 400 (bad body / no model), 404 (unknown model),
status_400/500/503, load-only requests, then the reply with any mid-stream fault.
With "stream": false, hang_mid acts as hang, drop as drop_before, error_line and
error_first give 500 {"error": ...}, malformed_line gives a truncated JSON body
and no_done is ignored. GET endpoints ignore faults and delays.
"""

import argparse
import hashlib
import json
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.prefix_cache import Evaluation, PromptCache, prompt_tokens, spoken

VERSION = "0.12.0"
DEFAULT_TOKENS = ("Bonjour", "!", " Café", " crème", " —", " naïve", " 🙂", " ok", ".")
BUSY = "server busy, please try again.  maximum pending requests exceeded"
STATUS_ERRORS = {
    "status_400": (400, "invalid request: fake status_400 fault"),
    "status_500": (500, "llama runner process has terminated: exit status 2"),
    "status_503": (503, BUSY),
}
MID_FAULTS = ("hang_mid", "error_line", "malformed_line", "drop")
FAULTS = (*STATUS_ERRORS, *MID_FAULTS, "hang", "error_first", "drop_before", "no_done")
RUN_ERROR = "an error was encountered while running the model: boom"
MALFORMED_LINE = b'{"message": {"content": "private words"\n'
HANG_SECONDS = 60.0
POLL = 0.01


@dataclass
class Step:
    """One scripted reply: text tokens, then tool calls, each a dict with
    `name`, `arguments` (an object, or text) and optionally `id`; a fault and
    a first delay for this request only (added to the behaviour's)."""

    text: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    fault: str | None = None
    first_delay: float = 0.0
    # Thinking chunks, sent before the text as lines with `message.thinking`.
    thinking: list[str] = field(default_factory=list)


CHAT_PATHS = ("/api/chat", "/v1/chat/completions")


@dataclass
class Behaviour:
    tokens: list[str] = field(default_factory=lambda: list(DEFAULT_TOKENS))
    delay: float = 0.0
    first_delay: float = 0.0
    fault: str | None = None
    fault_after: int = 2
    models: tuple[str, ...] = ("qwen2.5:3b-instruct",)
    # Start every reply with the user's message and "|", to tell replies apart.
    echo: bool = False
    # Send a stream's lines in one write, as a model faster than its reader
    # looks from the other side: every line arrives in one read.
    burst: bool = False
    # Seconds per prompt token the model must read (not found in its prompt
    # cache, bench.prefix_cache) before the first token of a chat reply.
    prompt_cost: float = 0.0
    # Scripted replies, taken one per chat request (see the module docstring).
    script: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A typo in a fault name would otherwise silently test the happy path.
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; expected one of {FAULTS}")


@dataclass(frozen=True)
class Disconnect:
    sent: int
    remaining: int
    at: float


class _ClientGone(Exception):
    """Unwinds a handler whose client left, so it stops generating like Ollama."""


class _Stopping(Exception):
    """Unwinds a handler so stop() is not held up by a hang or a slow stream."""


def _dumps(obj: Any) -> bytes:
    # Mimic Go's encoding/json: compact, raw UTF-8, HTML-sensitive chars escaped.
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text.encode()


def _now(delta: float = 0.0) -> str:
    when = datetime.now(UTC) + timedelta(seconds=delta)
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


DETAILS = {
    "parent_model": "",
    "format": "gguf",
    "family": "qwen2",
    "families": ["qwen2"],
    "parameter_size": "3.1B",
    "quantization_level": "Q4_K_M",
}


def _model_info(name: str, **extra: Any) -> dict[str, Any]:
    digest = hashlib.sha256(name.encode()).hexdigest()
    info = {"name": name, "model": name, "modified_at": "2025-01-01T00:00:00Z"}
    info.update(size=1929912432, digest=digest, details=dict(DETAILS), **extra)
    return info


def _shown(name: str) -> dict[str, Any]:
    """/api/show of a model, shaped as Ollama's (a few of its fields)."""
    return {
        "modelfile": f"FROM {name}\n",
        "parameters": 'stop "<|im_end|>"',
        "template": "{{ .System }}{{ .Prompt }}",
        "details": dict(DETAILS),
        "model_info": {
            "general.architecture": "qwen2",
            "general.parameter_count": 3085938688,
            "qwen2.context_length": 32768,
        },
        "capabilities": ["completion", "tools"],
        "modified_at": "2025-01-01T00:00:00Z",
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Go's listener backlog is large; http.server's default of 5 refuses bursts.
    request_queue_size = 128
    fake: "FakeOllama"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients vanishing is what this server is for; only real bugs are noisy.
        if not isinstance(sys.exc_info()[1], OSError | _Stopping | _ClientGone):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.fake = self.server.fake
        self.fake._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        # Ollama (Go net/http) sends no Server header.
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def _send(self, status: int, body: bytes, ctype: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype or "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send(status, _dumps({"error": message}))

    _held: list[bytes] | None = None

    def _chunk(self, data: bytes) -> None:
        framed = b"%x\r\n%s\r\n" % (len(data), data)
        if self._held is not None:
            self._held.append(framed)
            if data:
                return
            framed = self._release()
        try:
            self.wfile.write(framed)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _ClientGone from exc

    def _release(self) -> bytes:
        held, self._held = self._held or [], None
        return b"".join(held)

    def _client_gone(self) -> bool:
        # Peek rather than write: a write to a closed peer often "succeeds" once.
        try:
            if not select.select([self.connection], [], [], 0)[0]:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            if self.fake._stopping.is_set():
                raise _Stopping
            if self._client_gone():
                raise _ClientGone
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(POLL, left))

    def _drop(self) -> None:
        self.close_connection = True
        try:
            if self._held is not None:
                self.wfile.write(self._release())
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_body(self) -> bytes:
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        return b"".join(parts)

    def _read_request(self) -> tuple[bytes, Any]:
        """The body and its JSON (None if it is not JSON); objects are recorded."""
        raw = self._read_body()
        try:
            req = json.loads(raw)
        except ValueError:
            req = None
        if isinstance(req, dict):
            with self.fake._cond:
                self.fake.requests.append(req)
        return raw, req

    def do_GET(self) -> None:
        path, models = self.path.split("?")[0], self.fake.behaviour.models
        if path == "/":
            self._send(200, b"Ollama is running", "text/plain; charset=utf-8")
        elif path == "/api/version":
            self._send(200, _dumps({"version": VERSION}))
        elif path == "/api/tags":
            self._send(200, _dumps({"models": [_model_info(m) for m in models]}))
        elif path == "/api/ps":
            loaded = self.fake._loaded_models()
            ps = [_model_info(m, expires_at=e, size_vram=1) for m, e in loaded]
            self._send(200, _dumps({"models": ps}))
        else:
            self._send(404, b"404 page not found", "text/plain")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        behaviour = self.fake.behaviour
        self._step = self.fake._next_step() if self.path in CHAT_PATHS else None
        if self._step is not None:
            behaviour = replace(
                behaviour,
                fault=self._step.fault or behaviour.fault,
                first_delay=behaviour.first_delay + self._step.first_delay,
            )
        self._sent, self._total = 0, len(behaviour.tokens)
        self._generation: tuple[Evaluation, list[str], list[str]] | None = None
        self._calls: list[dict[str, Any]] = []
        self._calls_sent = False
        self._generating = False
        try:
            self._post(behaviour)
        except _ClientGone:
            left = self._total - self._sent
            self.fake._record(Disconnect(self._sent, left, time.monotonic()))
            self.close_connection = True
        except (_Stopping, OSError):
            self.close_connection = True
        finally:
            if self._generating:
                self.fake._generating(-1)
            if self._generation is not None:  # what was produced stays cached
                cost, prompt, tokens = self._generation
                message = {"content": "".join(tokens[: self._sent])}
                if self._calls_sent:
                    message["tool_calls"] = self._sent_back(self._calls)
                self.fake.prompt_cache.generated(cost, prompt, spoken(message))

    def _sent_back(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The calls as a client sends them back in its next prompt (Ollama's
        documented shape: no ids)."""
        return [{"function": call["function"]} for call in calls]

    def _post(self, b: Behaviour) -> None:
        t0 = time.monotonic_ns()
        raw, req = self._read_request()
        if self.path == "/api/show" and isinstance(req, dict):
            name = req.get("model") or req.get("name")
            if name in b.models:
                return self._send(200, _dumps(_shown(name)))
            return self._error(404, f"model '{name}' not found")
        if self.path not in ("/api/chat", "/api/generate"):
            return self._send(404, b"404 page not found", "text/plain")
        if b.fault == "drop_before":
            return self._drop()
        if b.fault == "hang":
            self._pause(HANG_SECONDS)
            return self._drop()
        self._pause(b.first_delay)
        if not isinstance(req, dict):
            return self._error(400, "invalid request body" if raw else "missing body")
        model = req.get("model")
        if not model:
            return self._error(400, "model is required")
        if model not in b.models:
            return self._error(404, f'model "{model}" not found, try pulling it first')
        if b.fault in STATUS_ERRORS:
            return self._error(*STATUS_ERRORS[b.fault])
        chat = self.path == "/api/chat"
        messages = (
            req.get("messages") or [] if chat else [{"content": req.get("prompt")}]
        )
        messages = [m for m in messages if isinstance(m, dict)]
        texts = [str(m.get("content") or "") for m in messages]

        def line(text: str, **extra: Any) -> dict[str, Any]:
            body = {"model": model, "created_at": _now()}
            if chat:
                body["message"] = {"role": "assistant", "content": text}
            else:
                body["response"] = text
            return {**body, **extra}

        if not any(texts):  # Ollama's way to load (or, keep_alive 0, unload) a model
            unload = req.get("keep_alive") in (0, "0", "0s")
            self.fake._mark_loaded(model, not unload)
            reason = "unload" if unload else "load"
            return self._send(200, _dumps(line("", done_reason=reason, done=True)))
        self.fake._mark_loaded(model, True)
        self._generating = True
        self.fake._generating(+1)
        prompt = prompt_tokens(messages) if chat else []
        cost = self.fake.prompt_cache.evaluate(prompt) if chat else None
        if cost is not None:
            self.fake._evaluated(cost)
            self._pause(b.prompt_cost * cost.evaluated)

        def final(text: str = "") -> bytes:
            total = max(time.monotonic_ns() - t0, 4)
            metrics = {"total_duration": total, "load_duration": total // 4}
            if cost is None:
                metrics.update(prompt_eval_count=sum(map(len, texts)) // 4 + 1)
            else:
                metrics.update(prompt_eval_count=cost.total)
                metrics.update(prompt_eval_cached_count=cost.cached)
            metrics.update(prompt_eval_duration=total // 4, eval_count=self._sent)
            metrics.update(eval_duration=total // 2)
            return _dumps(line(text, done_reason=reason, done=True, **metrics))

        tokens, fault = list(b.tokens), b.fault
        step = self._step
        calls = []
        if step is not None:
            tokens, calls = list(step.text), ollama_calls(step.calls)
        if b.echo:
            tokens.insert(0, texts[-1] + "|")
        # num_predict cuts the reply like a model would, one token a chunk.
        limit = (req.get("options") or {}).get("num_predict")
        reason = "stop"
        if isinstance(limit, int) and 0 < limit < len(tokens):
            tokens, reason = tokens[:limit], "length"
        if cost is not None:
            self._generation = (cost, prompt, tokens)
            self._calls = calls
        if req.get("stream", True) is False:
            self._pause(b.delay * len(tokens))
            if fault == "hang_mid":
                self._pause(HANG_SECONDS)
            if fault in ("hang_mid", "drop"):
                return self._drop()
            if fault in ("error_line", "error_first"):
                return self._error(500, RUN_ERROR)
            if fault == "malformed_line":
                return self._send(200, MALFORMED_LINE.rstrip())
            self._sent = len(tokens)
            whole = json.loads(final("".join(tokens)))
            if step is not None and step.thinking:
                whole["message"]["thinking"] = "".join(step.thinking)
            if calls:
                whole["message"]["tool_calls"] = calls
            return self._send(200, _dumps(whole))

        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._held = [] if b.burst else None
        if fault == "error_first":
            self._chunk(_dumps({"error": RUN_ERROR}) + b"\n")
            return self._chunk(b"")
        for thought in step.thinking if step is not None else ():
            thinking = line("", done=False)
            thinking["message"]["thinking"] = thought
            self._chunk(_dumps(thinking) + b"\n")
        for token in tokens[: b.fault_after] if fault in MID_FAULTS else tokens:
            self._pause(b.delay if self._sent else 0.0)
            self._chunk(_dumps(line(token, done=False)) + b"\n")
            self._sent += 1
        if calls and fault not in MID_FAULTS:
            self._pause(b.delay if self._sent else 0.0)
            call_line = line("", done=False)
            call_line["message"]["tool_calls"] = calls
            self._chunk(_dumps(call_line) + b"\n")
            self._calls_sent = True
        self._pause(b.delay if self._sent else 0.0)
        if fault == "hang_mid":
            self._pause(HANG_SECONDS)
        if fault in ("hang_mid", "drop"):
            return self._drop()
        if fault == "error_line":
            self._chunk(_dumps({"error": RUN_ERROR}) + b"\n")
        elif fault == "malformed_line":
            self._chunk(MALFORMED_LINE)
        elif fault != "no_done":
            self._chunk(final() + b"\n")
        self._chunk(b"")


def ollama_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scripted calls as Ollama writes them in `message.tool_calls`."""
    wire = []
    for call in calls:
        item: dict[str, Any] = {
            "function": {"name": call["name"], "arguments": call.get("arguments", {})}
        }
        if "id" in call:
            item["id"] = call["id"]
        wire.append(item)
    return wire


class FakeOllama:
    """Owns the server and everything tests want to observe about the traffic."""

    handler: type[BaseHTTPRequestHandler] = _Handler

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.behaviour = Behaviour()
        self.requests: list[dict[str, Any]] = []
        self.disconnects: list[Disconnect] = []
        # The prompt cache of the one model slot, and what each chat cost.
        self.prompt_cache = PromptCache()
        self.evaluations: list[Evaluation] = []
        self.connections = 0
        # Generations under way now, and the most there ever were at once.
        self.generating = 0
        self.max_generating = 0
        self._cond = threading.Condition()
        self._seen = 0
        self._loaded: dict[str, str] = {}
        self._socks: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # Bind now so that url is known (and the port reserved) before start().
        self._server = _Server((host, port), self.handler)
        self._server.fake = self
        self.host, self.port = self._server.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"

    def start(self) -> "FakeOllama":
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        with self._cond:  # idle keep-alive handlers block in recv: wake them
            for sock in list(self._socks):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._cond.wait_for(lambda: not self._socks, timeout=1.0)
        self._server.server_close()

    def reset(self) -> None:
        with self._cond:
            self.behaviour = Behaviour()
            self.requests.clear()
            self.disconnects.clear()
            self.prompt_cache = PromptCache()
            self.evaluations.clear()
            self.connections = self._seen = 0
            self.generating = self.max_generating = 0
            self._loaded.clear()

    def wait_for_disconnect(self, timeout: float) -> Disconnect | None:
        """Return the next disconnect not yet returned, so repeated calls walk
        through them in order; None if none arrives within timeout."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: len(self.disconnects) > self._seen, timeout
            ):
                return None
            self._seen += 1
            return self.disconnects[self._seen - 1]

    def __enter__(self) -> "FakeOllama":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, sock: socket.socket, opened: bool) -> None:
        with self._cond:
            self.connections += opened
            (self._socks.add if opened else self._socks.discard)(sock)
            self._cond.notify_all()

    def _next_step(self) -> Step | None:
        with self._cond:
            script = self.behaviour.script
            return script.pop(0) if script else None

    def _generating(self, change: int) -> None:
        with self._cond:
            self.generating += change
            self.max_generating = max(self.max_generating, self.generating)
            self._cond.notify_all()

    def wait_generating(self, count: int, timeout: float) -> bool:
        """Whether `count` generations are under way at once within timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.generating >= count, timeout)

    def _evaluated(self, evaluation: Evaluation) -> None:
        with self._cond:
            self.evaluations.append(evaluation)

    def _record(self, disconnect: Disconnect) -> None:
        with self._cond:
            self.disconnects.append(disconnect)
            self._cond.notify_all()

    def _mark_loaded(self, model: str, loaded: bool) -> None:
        with self._cond:
            if loaded:
                self._loaded[model] = _now(300.0)
            else:
                self._loaded.pop(model, None)

    def _loaded_models(self) -> list[tuple[str, str]]:
        with self._cond:
            return list(self._loaded.items())


def arguments(prog: str, description: str, port: int, models: str):
    """The command line of a fake model server (this one or fake_openai)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--tokens", type=int, metavar="N", help="reply 'word1 '...")
    parser.add_argument("--delay", type=float, default=0.0, metavar="S")
    parser.add_argument("--first-delay", type=float, default=0.0, metavar="S")
    parser.add_argument("--fault", choices=FAULTS)
    parser.add_argument("--fault-after", type=int, default=2, metavar="N")
    parser.add_argument("--models", default=models, help="a,b,...")
    return parser


def serve(fake_class: type["FakeOllama"], args: argparse.Namespace, banner: str):
    """Run a fake with the behaviour the arguments describe until Ctrl-C."""
    words = [f"word{i} " for i in range(1, (args.tokens or 0) + 1)]
    fake = fake_class(args.host, args.port)
    fake.behaviour = Behaviour(
        tokens=words if args.tokens is not None else list(DEFAULT_TOKENS),
        delay=args.delay,
        first_delay=args.first_delay,
        fault=args.fault,
        fault_after=args.fault_after,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
    )
    fake.start()
    print(banner.format(url=fake.url), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


def main(argv: list[str] | None = None) -> None:
    parser = arguments(
        "python -m tests.support.fake_ollama",
        "Serve a fake Ollama (chat/generate/tags/ps/version) until Ctrl-C.",
        11434,
        "qwen2.5:3b-instruct",
    )
    serve(FakeOllama, parser.parse_args(argv), "fake ollama listening on {url}")


if __name__ == "__main__":
    main()
