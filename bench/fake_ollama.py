"""A fast fake Ollama, so piagent can be measured without a model.

Why it exists: the benchmark compares piagent against "the limit", the same load
sent straight to this fake. That comparison only means something if the fake
costs far less than piagent, so it is a bare asyncio Protocol (no framework, no
http.server), answers from pre-built bytes where it can, and runs in its own
process so its CPU is never counted as the server's.

Request scheme. The reply is chosen by ``key=value`` words anywhere in the *last
user message* of ``POST /api/chat`` (other words are ignored, so a system prompt
or a template around the message does not matter):

    tokens=N      token lines to send (default 20)
    delay_ms=D    gap between token lines, in ms (default 0)
    first_ms=F    wait before the first token line, in ms (default 0)
    id=NAME       keep a per-stream record under NAME for ``GET /_stats``

e.g. ``"bench tokens=200 delay_ms=20"``. Every token's content is ``"tok "`` (4
bytes), so a client can check it got every token from the length of the text.

Endpoints: ``GET /`` and ``HEAD /`` ("Ollama is running"), ``GET /api/tags``,
``GET /api/version``, ``POST /api/chat`` (NDJSON, one line per HTTP chunk, or a
single JSON object with ``"stream": false``), ``GET /_stats`` (counters, and
``?id=NAME`` for one record), ``POST /_reset``. An unknown model answers 404 with
Ollama's error body.

Disconnects. Before every token line a delayed stream looks at whether the peer
closed (EOF or a lost connection); if so it stops, records when it noticed, and
never writes another line (a zero-delay stream checks between batches of 256).
Each ``id=`` record keeps the monotonic time of every line written
(``time.monotonic()``, the same clock in every process on Linux), so the harness
can count the lines written after its client hung up.

Prompt cache. With ``--prompt-ms-per-token F`` the fake also plays a model's
prompt cache (bench.prefix_cache, ``--slots`` slots, 1 by default): each chat
request waits F ms per prompt token the model would have to read (those after
the first difference from the slot's last prompt and reply) before its first
token, and its final line reports ``prompt_eval_count`` (the whole prompt) and
``prompt_eval_cached_count``, as Ollama 0.30+ does. ``--reply-tokens N`` sets
the reply length of messages that carry no ``tokens=`` word.

Run: ``python -m bench.fake_ollama --port 0 --models bench-model``; it prints
``READY <port>`` on stdout once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.prefix_cache import Evaluation, PromptCache, prompt_tokens

TOKEN_TEXT = "tok "
CREATED_AT = "2024-01-01T00:00:00.000000000Z"
DEFAULT_TOKENS = 20
MAX_HEAD_BYTES = 65536
FAST_PATH_MAX_TOKENS = 512
BATCH_TOKENS = 256
MAX_RECORDS = 20000
_WORD = re.compile(r"([a-z_]+)=(\S+)")


@dataclass(slots=True)
class ReplyPlan:
    """What one chat request asked for (see the module docstring)."""

    tokens: int = DEFAULT_TOKENS
    delay_s: float = 0.0
    # Filled in by the prompt-cache model, when it runs.
    prompt: list[str] | None = None
    cost: Evaluation | None = None
    first_s: float = 0.0
    record_id: str | None = None

    @property
    def instant(self) -> bool:
        return not self.delay_s and not self.first_s


@dataclass(slots=True)
class StreamRecord:
    """What happened to one ``id=`` stream, for the disconnect figure."""

    planned: int
    started_at: float
    write_times: list[float] = field(default_factory=list)
    peer_closed_at: float | None = None
    stop: str = "running"  # running | complete | peer-closed
    ended_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "written": len(self.write_times),
            "started_at": self.started_at,
            "write_times": self.write_times,
            "peer_closed_at": self.peer_closed_at,
            "stop": self.stop,
            "ended_at": self.ended_at,
        }


def parse_plan(text: str, default_tokens: int = DEFAULT_TOKENS) -> ReplyPlan:
    """Read ``tokens=``, ``delay_ms=``, ``first_ms=``, ``id=`` from a message."""
    plan = ReplyPlan(tokens=default_tokens)
    for key, value in _WORD.findall(text):
        try:
            if key == "tokens":
                plan.tokens = max(0, int(value))
            elif key == "delay_ms":
                plan.delay_s = max(0.0, float(value)) / 1000
            elif key == "first_ms":
                plan.first_s = max(0.0, float(value)) / 1000
            elif key == "id":
                plan.record_id = value
        except ValueError:
            continue
    return plan


def _last_user_text(messages: Any) -> str:
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else ""
    return ""


def _response(
    status: str, body: bytes, content_type: str, keep_alive: bool, head: bool = False
) -> bytes:
    connection = "keep-alive" if keep_alive else "close"
    head_bytes = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {connection}\r\n\r\n"
    ).encode()
    return head_bytes if head else head_bytes + body


def _json_response(status: str, obj: Any, keep_alive: bool) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return _response(status, body, "application/json; charset=utf-8", keep_alive)


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class FakeOllama:
    """Shared state of the fake: known models, counters, pre-built bytes."""

    def __init__(
        self,
        models: list[str],
        prompt_ms_per_token: float | None = None,
        slots: int = 1,
        reply_tokens: int = DEFAULT_TOKENS,
    ) -> None:
        self.any_model = "*" in models
        # The prompt-cache model, only when asked for: it costs a tokenization
        # of every prompt, which the other figures must not pay for.
        self.prompt_cache = (
            PromptCache(slots) if prompt_ms_per_token is not None else None
        )
        self.prompt_s_per_token = (prompt_ms_per_token or 0.0) / 1000
        self.reply_tokens = reply_tokens
        self.models = [m for m in models if m != "*"]
        self.counters: dict[str, int] = {
            "connections": 0,
            "open_connections": 0,
            "max_open_connections": 0,
            "requests": 0,
            "chat_requests": 0,
            "not_found": 0,
            "bad_requests": 0,
            "streams_started": 0,
            "streams_completed": 0,
            "streams_peer_closed": 0,
            "tokens_written": 0,
        }
        self.records: OrderedDict[str, StreamRecord] = OrderedDict()
        self._token_chunks: dict[str, bytes] = {}
        self._instant_replies: dict[tuple[str, int, bool], bytes] = {}
        self._plans: dict[bytes, tuple[str, ReplyPlan, bool] | None] = {}

    def knows(self, model: str) -> bool:
        if self.any_model:
            return True
        return model in self.models or f"{model}:latest" in self.models

    def token_chunk(self, model: str) -> bytes:
        """One token line as one HTTP chunk, built once per model."""
        chunk = self._token_chunks.get(model)
        if chunk is None:
            line = {
                "model": model,
                "created_at": CREATED_AT,
                "message": {"role": "assistant", "content": TOKEN_TEXT},
                "done": False,
            }
            chunk = _chunk(json.dumps(line, separators=(",", ":")).encode() + b"\n")
            self._token_chunks[model] = chunk
        return chunk

    @staticmethod
    def final_chunk(model: str, tokens: int, cost: Evaluation | None = None) -> bytes:
        line = {
            "model": model,
            "created_at": CREATED_AT,
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "total_duration": 1,
            "load_duration": 1,
            "prompt_eval_count": 10,
            "prompt_eval_duration": 1,
            "eval_count": tokens,
            "eval_duration": 1,
        }
        if cost is not None:
            line["prompt_eval_count"] = cost.total
            line["prompt_eval_cached_count"] = cost.cached
        return _chunk(json.dumps(line, separators=(",", ":")).encode() + b"\n")

    @staticmethod
    def stream_head(keep_alive: bool) -> bytes:
        connection = "keep-alive" if keep_alive else "close"
        return (
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            f"Transfer-Encoding: chunked\r\nConnection: {connection}\r\n\r\n"
        ).encode()

    def instant_reply(self, model: str, tokens: int, keep_alive: bool) -> bytes:
        """A whole zero-delay stream as one write, cached: the fast path."""
        key = (model, tokens, keep_alive)
        reply = self._instant_replies.get(key)
        if reply is None:
            reply = (
                self.stream_head(keep_alive)
                + self.token_chunk(model) * tokens
                + self.final_chunk(model, tokens)
                + b"0\r\n\r\n"
            )
            if len(self._instant_replies) > 256:
                self._instant_replies.clear()
            self._instant_replies[key] = reply
        return reply

    def plan_for(self, body: bytes) -> tuple[str, ReplyPlan, bool] | None:
        """Parse a chat body (cached: load generators repeat the same body)."""
        if body in self._plans:
            return self._plans[body]
        try:
            request = json.loads(body)
        except ValueError:
            return None
        if not isinstance(request, dict):
            return None
        model = request.get("model")
        if not isinstance(model, str):
            return None
        messages = request.get("messages")
        plan = parse_plan(_last_user_text(messages), self.reply_tokens)
        parsed = (model, plan, request.get("stream", True) is not False)
        if self.prompt_cache is not None:
            # Never cached: the same body costs differently as the cache moves.
            plan.prompt = prompt_tokens(
                m for m in messages or [] if isinstance(m, dict)
            )
            plan.cost = self.prompt_cache.evaluate(plan.prompt)
            plan.first_s += self.prompt_s_per_token * plan.cost.evaluated
            return parsed
        if plan.record_id is None:
            if len(self._plans) > 1024:
                self._plans.clear()
            self._plans[body] = parsed
        return parsed

    def new_record(self, record_id: str, planned: int) -> StreamRecord:
        record = StreamRecord(planned=planned, started_at=time.monotonic())
        self.records[record_id] = record
        self.records.move_to_end(record_id)
        while len(self.records) > MAX_RECORDS:
            self.records.popitem(last=False)
        return record

    def stats(self, query: str) -> dict[str, Any]:
        wanted = parse_qs(query).get("id")
        records = self.records
        if wanted:
            chosen = {i: records[i].as_json() for i in wanted if i in records}
        else:
            chosen = {i: r.as_json() for i, r in records.items()}
        return {"counters": dict(self.counters), "records": chosen}

    def reset(self) -> None:
        for key in self.counters:
            if key != "open_connections":
                self.counters[key] = 0
        self.counters["max_open_connections"] = self.counters["open_connections"]
        self.records.clear()


class Connection(asyncio.Protocol):
    """One client connection: parses requests, serves them one at a time."""

    def __init__(self, app: FakeOllama) -> None:
        self.app = app
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peer_closed = False
        self.peer_closed_at: float | None = None
        self.busy = False
        self._can_write: asyncio.Event | None = None

    # --- asyncio callbacks ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        counters = self.app.counters
        counters["connections"] += 1
        counters["open_connections"] += 1
        if counters["open_connections"] > counters["max_open_connections"]:
            counters["max_open_connections"] = counters["open_connections"]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._serve_buffered()

    def eof_received(self) -> bool:
        self._mark_peer_closed()
        # Keep the transport open while a stream is running, so the stream task
        # itself notices at its next token and records it; otherwise close.
        return self.busy

    def connection_lost(self, exc: Exception | None) -> None:
        self._mark_peer_closed()
        self.app.counters["open_connections"] -= 1
        if self._can_write is not None:
            self._can_write.set()

    def pause_writing(self) -> None:
        self._can_write = asyncio.Event()

    def resume_writing(self) -> None:
        if self._can_write is not None:
            self._can_write.set()
            self._can_write = None

    # --- request handling ---
    def _mark_peer_closed(self) -> None:
        if not self.peer_closed:
            self.peer_closed = True
            self.peer_closed_at = time.monotonic()

    def _serve_buffered(self) -> None:
        transport = self.transport
        assert transport is not None
        while not self.busy and not transport.is_closing():
            request = self._take_request()
            if request is None:
                return
            self.app.counters["requests"] += 1
            self._dispatch(*request)

    def _take_request(self) -> tuple[str, str, bytes, bool] | None:
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                self._finish(_response("431 Too Large", b"", "text/plain", False))
            return None
        lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            self._finish(_response("400 Bad Request", b"", "text/plain", False))
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            decoded = _dechunk(buffer, start)
            if decoded is None:
                return None
            body, consumed = decoded
        else:
            length = int(headers.get("content-length", "0") or 0)
            if len(buffer) < start + length:
                return None
            body, consumed = bytes(buffer[start : start + length]), start + length
        del buffer[:consumed]
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            keep_alive = connection == "keep-alive"
        else:
            keep_alive = connection != "close"
        return method, target, body, keep_alive

    def _finish(self, data: bytes, keep_alive: bool = False) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(data)
        if not keep_alive:
            transport.close()

    def _dispatch(
        self, method: str, target: str, body: bytes, keep_alive: bool
    ) -> None:
        app = self.app
        url = urlsplit(target)
        path = url.path
        if path == "/api/chat" and method == "POST":
            self._chat(body, keep_alive)
        elif path == "/" and method in ("GET", "HEAD"):
            reply = _response(
                "200 OK",
                b"Ollama is running",
                "text/plain; charset=utf-8",
                keep_alive,
                head=method == "HEAD",
            )
            self._finish(reply, keep_alive)
        elif path == "/api/tags" and method == "GET":
            models = [{"name": m, "model": m} for m in app.models]
            self._finish(
                _json_response("200 OK", {"models": models}, keep_alive), keep_alive
            )
        elif path == "/api/version" and method == "GET":
            self._finish(
                _json_response("200 OK", {"version": "0.0.0-fake"}, keep_alive),
                keep_alive,
            )
        elif path == "/_stats" and method == "GET":
            stats = app.stats(url.query)
            self._finish(_json_response("200 OK", stats, keep_alive), keep_alive)
        elif path == "/_reset" and method == "POST":
            app.reset()
            self._finish(
                _json_response("200 OK", {"reset": True}, keep_alive), keep_alive
            )
        else:
            reply = _response(
                "404 Not Found", b"404 page not found", "text/plain", keep_alive
            )
            self._finish(reply, keep_alive)

    def _chat(self, body: bytes, keep_alive: bool) -> None:
        app = self.app
        counters = app.counters
        counters["chat_requests"] += 1
        parsed = app.plan_for(body)
        if parsed is None:
            counters["bad_requests"] += 1
            error = {"error": "invalid request body"}
            self._finish(
                _json_response("400 Bad Request", error, keep_alive), keep_alive
            )
            return
        model, plan, stream = parsed
        if not app.knows(model):
            counters["not_found"] += 1
            error = {"error": f'model "{model}" not found, try pulling it first'}
            self._finish(_json_response("404 Not Found", error, keep_alive), keep_alive)
            return
        if not stream:
            self.busy = True
            asyncio.ensure_future(self._whole(model, plan, keep_alive))
            return
        counters["streams_started"] += 1
        if plan.instant and plan.record_id is None and plan.cost is None:
            if plan.tokens <= FAST_PATH_MAX_TOKENS:
                counters["streams_completed"] += 1
                counters["tokens_written"] += plan.tokens
                reply = app.instant_reply(model, plan.tokens, keep_alive)
                self._finish(reply, keep_alive)
                return
        self.busy = True
        asyncio.ensure_future(self._stream(model, plan, keep_alive))

    async def _whole(self, model: str, plan: ReplyPlan, keep_alive: bool) -> None:
        """``"stream": false``: one JSON object after the whole (simulated) reply."""
        delay = plan.first_s + plan.delay_s * max(0, plan.tokens - 1)
        if delay:
            await asyncio.sleep(delay)
        reply = {
            "model": model,
            "created_at": CREATED_AT,
            "message": {"role": "assistant", "content": TOKEN_TEXT * plan.tokens},
            "done": True,
            "done_reason": "stop",
            "eval_count": plan.tokens,
        }
        self._done(_json_response("200 OK", reply, keep_alive), keep_alive)

    async def _stream(self, model: str, plan: ReplyPlan, keep_alive: bool) -> None:
        """Token lines on a schedule, checking for a closed peer before each.

        A zero-delay stream goes out in batches of BATCH_TOKENS lines (still one
        HTTP chunk per line), checking between batches: what Ollama does when
        tokens come faster than the socket drains, and far cheaper for us.
        """
        app = self.app
        counters = app.counters
        transport = self.transport
        assert transport is not None
        record = None
        if plan.record_id is not None:
            record = app.new_record(plan.record_id, plan.tokens)
        chunk = app.token_chunk(model)
        transport.write(app.stream_head(keep_alive))
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        while sent < plan.tokens:
            if plan.instant:
                batch = min(BATCH_TOKENS, plan.tokens - sent)
                if sent:
                    await asyncio.sleep(0)  # let the loop see an EOF
            else:
                batch = 1
                wait = start + plan.first_s + sent * plan.delay_s - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            if self.peer_closed:
                counters["streams_peer_closed"] += 1
                if plan.cost is not None and app.prompt_cache is not None:
                    reply = TOKEN_TEXT * sent
                    app.prompt_cache.generated(plan.cost, plan.prompt or [], reply)
                if record is not None:
                    record.peer_closed_at = self.peer_closed_at
                    record.stop = "peer-closed"
                    record.ended_at = time.monotonic()
                self.busy = False
                transport.close()
                return
            transport.write(chunk * batch if batch > 1 else chunk)
            sent += batch
            counters["tokens_written"] += batch
            if record is not None:
                record.write_times.extend([time.monotonic()] * batch)
            if self._can_write is not None:
                await self._can_write.wait()
        counters["streams_completed"] += 1
        if record is not None:
            record.stop = "complete"
            record.ended_at = time.monotonic()
        if plan.cost is not None and app.prompt_cache is not None:
            app.prompt_cache.generated(plan.cost, plan.prompt or [], TOKEN_TEXT * sent)
        final = app.final_chunk(model, plan.tokens, plan.cost)
        self._done(final + b"0\r\n\r\n", keep_alive)

    def _done(self, data: bytes, keep_alive: bool) -> None:
        self.busy = False
        transport = self.transport
        assert transport is not None
        if transport.is_closing():
            return
        transport.write(data)
        if not keep_alive or self.peer_closed:
            transport.close()
        elif self.buffer:
            self._serve_buffered()


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked request body; None until all of it has arrived."""
    parts = []
    pos = start
    while True:
        line_end = buffer.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(buffer[pos:line_end]).split(b";")[0], 16)
        pos = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n", pos)
            while trailer_end >= 0 and trailer_end != pos:
                pos = trailer_end + 2
                trailer_end = buffer.find(b"\r\n", pos)
            if trailer_end < 0:
                return None
            return b"".join(parts), trailer_end + 2
        if len(buffer) < pos + size + 2:
            return None
        parts.append(bytes(buffer[pos : pos + size]))
        pos += size + 2


def raise_nofile_limit() -> int:
    """Soft open-files limit up to the hard limit, for us and our children.

    1,000 streams through piagent need ~2,000 descriptors in the worker (client
    side + upstream side) and 1,000 in the load generator; the usual soft limit
    is 1,024. Children started afterwards inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def serve(host: str, port: int, app: FakeOllama) -> None:
    """Listen until cancelled; prints ``READY <port>`` once accepting."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Connection(app), host, port, backlog=4096, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434, help="0 picks a free one")
    parser.add_argument(
        "--models",
        default="bench-model",
        help="comma-separated known models; '*' accepts any name",
    )
    parser.add_argument(
        "--prompt-ms-per-token",
        type=float,
        metavar="F",
        help="play a prompt cache: wait F ms per prompt token not in it",
    )
    parser.add_argument("--slots", type=int, default=1, help="prompt-cache slots")
    parser.add_argument(
        "--reply-tokens",
        type=int,
        default=DEFAULT_TOKENS,
        metavar="N",
        help="reply length when a message carries no tokens= word",
    )
    args = parser.parse_args(argv)
    raise_nofile_limit()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    app = FakeOllama(models, args.prompt_ms_per_token, args.slots, args.reply_tokens)
    try:
        asyncio.run(serve(args.host, args.port, app))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
