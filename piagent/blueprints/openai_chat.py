"""POST /v1/chat/completions: OpenAI's chat API, so its clients can use piagent.

`model` names an agent, whose system prompt goes first; `messages` are the
whole history (stateless, as OpenAI is: nothing is read from or written to
memory). Errors come in OpenAI's shape from piagent.errors (the /v1/ dialect).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from piagent.blueprints.chat import STREAM_HEADERS
from piagent.blueprints.connection import client_probe
from piagent.blueprints.json_body import read_json_object
from piagent.errors import ProviderError, openai_error_body
from piagent.events import Done, Event, Ping, Tokens
from piagent.providers import Options
from piagent.schemas import load_or_422
from piagent.stats import TurnStats

bp = Blueprint("openai_chat", __name__)

# The model server's words for a reply cut at max_tokens; anything else is "stop".
LENGTH_REASONS = ("length", "max_tokens")


def finish_reason(stats: TurnStats) -> str:
    reason = stats.usage.done_reason if stats.usage is not None else None
    return "length" if reason in LENGTH_REASONS else "stop"


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


def chunk_frames(
    completion_id: str, model: str, include_usage: bool
) -> Callable[[Iterator[Event]], Iterator[bytes]]:
    """chat.completion.chunk events: the role, each token, the finish reason,
    the usage if asked for, `data: [DONE]`; `: ping` comments while the model
    is silent; a failure is a `data: {"error": ...}` event (the openai client
    raises it as an APIError) and no [DONE]."""
    created = int(time.time())

    def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
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
                    yield b": ping\n\n"
                elif isinstance(event, Done):
                    yield _data(chunk({}, finish_reason(event.stats)))
                    if include_usage:
                        last = chunk({})
                        last.update(choices=[], usage=usage_block(event.stats))
                        yield _data(last)
                    yield b"data: [DONE]\n\n"
        except ProviderError as exc:
            yield _data(openai_error_body(exc))

    return frames


@bp.post("/v1/chat/completions")
def chat_completions() -> Response:
    services = current_app.extensions["piagent"]
    payload = read_json_object(services.settings.max_body_bytes)
    fields = load_or_422(services.completion_schema, payload)
    messages = [
        {
            "role": "system" if m["role"] == "developer" else m["role"],
            "content": m["content"],
        }
        for m in fields["messages"]
    ]
    options = Options(
        temperature=fields["temperature"],
        max_tokens=fields["max_completion_tokens"] or fields["max_tokens"],
    )
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    turn = services.chat.start_stateless(
        fields["model"], messages, options, completion_id
    )
    g.turn = turn  # read by the request log when the response is closed
    present = client_probe(request.environ)
    if not fields["stream"]:
        reply = services.chat.reply(turn, present)
        return jsonify(
            id=completion_id,
            object="chat.completion",
            created=int(time.time()),
            model=fields["model"],
            choices=[
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "logprobs": None,
                    "finish_reason": finish_reason(turn.stats),
                }
            ],
            usage=usage_block(turn.stats),
        )
    include_usage = bool((fields["stream_options"] or {}).get("include_usage"))
    events = services.chat.stream(turn, present, pings=True)
    frames = chunk_frames(completion_id, fields["model"], include_usage)
    return Response(
        events.framed(frames),
        content_type="text/event-stream; charset=utf-8",
        headers=STREAM_HEADERS,
    )
