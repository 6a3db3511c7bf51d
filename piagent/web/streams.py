"""How a turn's events become a response body: text, SSE, NDJSON or OpenAI chunks.

One event stream feeds every format. text/plain (the default of /chat) carries
the tokens only and ends a failed stream without its terminating chunk; SSE and
NDJSON carry the same events, `token`, `tool_call`, `tool_result`, `done` and
`error`, plus pings while the model is silent before its first token (and
while it reads a tool's result), and always end properly. /v1 streams are
OpenAI's `chat.completion.chunk` events, a client's tool calls included.
"""

from __future__ import annotations

import errno
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from piagent.errors import ProviderError
from piagent.events import Done, Event, Ping, Tokens, ToolCall, ToolResult
from piagent.stats import TurnStats
from piagent.web.errors import openai_error_body, stream_error

Framer = Callable[[Iterator[Event]], Iterator[bytes]]

# On every stream, in every format.
STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    # nginx would otherwise buffer the stream and deliver it at the end.
    "X-Accel-Buffering": "no",
}

TEXT = "text/plain"
SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
FORMATS = (TEXT, SSE, NDJSON)
CONTENT_TYPES = {
    TEXT: "text/plain; charset=utf-8",
    SSE: "text/event-stream; charset=utf-8",
    NDJSON: "application/x-ndjson; charset=utf-8",
}


class StreamAborted(ConnectionResetError):
    """Ends a streamed response without its terminating chunk, so the client sees an
    incomplete transfer. WSGI has no other way to say so; gunicorn treats a reset
    as a vanished client and closes the socket without logging a traceback (the
    cause is logged by piagent just before)."""

    def __init__(self, detail: str) -> None:
        super().__init__(errno.ECONNRESET, detail)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def text_frames(events: Iterator[Event]) -> Iterator[bytes]:
    """The predecessor's contract: tokens as they come, nothing else."""
    try:
        for event in events:
            if isinstance(event, Tokens):
                yield "".join(event.texts).encode()
    except ProviderError as exc:
        raise StreamAborted(str(exc.detail)) from exc


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {_json(data)}\n\n".encode()


def _ndjson(name: str, data: dict[str, Any]) -> bytes:
    return (_json({"event": name, **data}) + "\n").encode()


SSE_PING = b": ping\n\n"
NDJSON_PING = b'{"event":"ping"}\n'


def arguments_value(arguments: str) -> Any:
    """A tool call's arguments for a client to read: the JSON object the model
    wrote, or its text as it was when that is not a JSON object."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    return value if isinstance(value, dict) else arguments


def tool_call_data(event: ToolCall) -> dict[str, Any]:
    return {
        "id": event.id,
        "name": event.name,
        "arguments": arguments_value(event.arguments),
    }


def tool_result_data(event: ToolResult) -> dict[str, Any]:
    return {
        "id": event.id,
        "name": event.name,
        "result": event.result,
        "error": event.error,
        "duration_s": round(event.seconds, 3),
    }


def event_frames(
    frame: Callable[[str, dict[str, Any]], bytes],
    ping: bytes,
    done: Callable[[Done], dict[str, Any]],
) -> Framer:
    """A framer of every event; a failure is an `error` event ending the body."""

    def frames(events: Iterator[Event]) -> Iterator[bytes]:
        try:
            for event in events:
                if isinstance(event, Tokens):
                    yield b"".join(frame("token", {"text": t}) for t in event.texts)
                elif isinstance(event, Ping):
                    yield ping
                elif isinstance(event, ToolCall):
                    yield frame("tool_call", tool_call_data(event))
                elif isinstance(event, ToolResult):
                    yield frame("tool_result", tool_result_data(event))
                elif isinstance(event, Done):
                    yield frame("done", done(event))
        except ProviderError as exc:
            yield frame("error", stream_error(exc))

    return frames


def framer(media_type: str, done: Callable[[Done], dict[str, Any]]) -> Framer:
    """The framer of /chat's stream in `media_type` (TEXT, SSE or NDJSON)."""
    if media_type == SSE:
        return event_frames(_sse, SSE_PING, done)
    if media_type == NDJSON:
        return event_frames(_ndjson, NDJSON_PING, done)
    return text_frames


# The model server's words for a reply cut at max_tokens; anything else is "stop".
LENGTH_REASONS = ("length", "max_tokens")


def finish_reason(stats: TurnStats) -> str:
    """OpenAI's finish_reason of a finished turn."""
    if stats.calls:
        return "tool_calls"
    reason = stats.usage.done_reason if stats.usage is not None else None
    return "length" if reason in LENGTH_REASONS else "stop"


def tool_calls_block(stats: TurnStats) -> list[dict[str, Any]]:
    """The tool calls a /v1 client is asked to run, in OpenAI's shape."""
    return [call.wire() for call in stats.calls]


def usage_block(stats: TurnStats) -> dict[str, Any] | None:
    """OpenAI's usage from the model server's own counts; None if it sent none.
    `prompt_tokens_details.cached_tokens` only when the server said how much
    of the prompt came from its cache."""
    prompt, reply = stats.prompt_tokens, stats.reply_tokens
    if prompt is None or reply is None:
        return None
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": reply,
        "total_tokens": prompt + reply,
    }
    if stats.cached_prompt_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": stats.cached_prompt_tokens}
    return usage


def _data(item: Any) -> bytes:
    return b"data: " + json.dumps(item, ensure_ascii=False).encode() + b"\n\n"


def chunk_frames(completion_id: str, model: str, include_usage: bool) -> Framer:
    """chat.completion.chunk events: the role, each token, the finish reason,
    the usage if asked for, `data: [DONE]`; `: ping` comments while the model
    is silent; a failure is a `data: {"error": ...}` event (the openai client
    raises it as an APIError) and no [DONE]."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }
        if include_usage:
            item["usage"] = None
        return item

    def frames(events: Iterator[Event]) -> Iterator[bytes]:
        yield _data(chunk({"role": "assistant", "content": ""}))
        try:
            for event in events:
                if isinstance(event, Tokens):
                    yield b"".join(_data(chunk({"content": t})) for t in event.texts)
                elif isinstance(event, Ping):
                    yield SSE_PING
                elif isinstance(event, Done):
                    # A model server may stream a call in pieces; piagent sends
                    # each whole, one delta a call, as OpenAI may.
                    for index, call in enumerate(event.stats.calls):
                        delta = {"tool_calls": [{"index": index, **call.wire()}]}
                        yield _data(chunk(delta))
                    yield _data(chunk({}, finish_reason(event.stats)))
                    if include_usage:
                        last = chunk({})
                        last.update(choices=[], usage=usage_block(event.stats))
                        yield _data(last)
                    yield b"data: [DONE]\n\n"
        except ProviderError as exc:
            yield _data(openai_error_body(exc))

    return frames
