"""POST /v1/chat/completions: OpenAI's chat API, so its clients can use piagent.

`model` names an agent, whose system prompt goes first; `messages` are the
whole history (stateless, as OpenAI is: nothing is read from or written to
memory). The client's `tools` go to the model server with its messages, and
the tool calls the model makes come back for the client to run (the agent's
own tools are never offered here). Errors come in OpenAI's shape from
piagent.web.errors (the /v1/ dialect); the stream's chunks are framed in
piagent.web.streams.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from piagent.providers import ChatMessage, Options, ToolOffer
from piagent.stats import TurnStats
from piagent.web.apidoc import Reply, event_stream, operation
from piagent.web.body import read_json_object
from piagent.web.client import client_probe
from piagent.web.context import services
from piagent.web.reply_schemas import ChatCompletionReplySchema
from piagent.web.schemas import load_or_422
from piagent.web.streams import (
    CONTENT_TYPES,
    SSE,
    STREAM_HEADERS,
    chunk_frames,
    finish_reason,
    tool_calls_block,
    usage_block,
)

bp = Blueprint("openai_chat", __name__)


@bp.post("/v1/chat/completions")
@operation(
    tag="openai",
    body=lambda found: found.completion_schema,
    replies={
        200: Reply(
            "A chat.completion, or with `stream: true` server-sent "
            "chat.completion.chunk events ending with `data: [DONE]`.",
            ChatCompletionReplySchema,
            content={
                SSE: event_stream(
                    "`data: {ChatCompletionChunk}` per event, then `data: [DONE]`; "
                    "`: ping` comments until the first token; a failure is a `data: "
                    '{"error": ...}` event and no [DONE].',
                    ("ChatCompletionChunk", "OpenAIError"),
                )
            },
        )
    },
    errors=(404, 502, 503, 504),
)
def chat_completions() -> Response:
    """OpenAI's chat completion: `model` names an agent, `messages` are the
    whole history (stateless)."""
    found = services()
    payload = read_json_object(found.settings.max_body_bytes)
    fields = load_or_422(found.completion_schema, payload)
    messages = [chat_message(m) for m in fields["messages"]]
    options = Options(
        temperature=fields["temperature"],
        max_tokens=fields["max_completion_tokens"] or fields["max_tokens"],
    )
    tools = None
    if fields["tools"]:
        tools = ToolOffer(
            tuple(fields["tools"]), fields["tool_choice"], fields["parallel_tool_calls"]
        )
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    turn = found.chat.start_stateless(
        fields["model"], messages, options, completion_id, tools
    )
    g.turn = turn  # read by the request log when the response is closed
    present = client_probe(request.environ)
    if not fields["stream"]:
        reply = found.chat.reply(turn, present)
        return jsonify(
            id=completion_id,
            object="chat.completion",
            created=int(time.time()),
            model=fields["model"],
            choices=[
                {
                    "index": 0,
                    "message": assistant_message(reply.text, turn.stats),
                    "logprobs": None,
                    "finish_reason": finish_reason(turn.stats),
                }
            ],
            usage=usage_block(turn.stats),
        )
    include_usage = bool((fields["stream_options"] or {}).get("include_usage"))
    events = found.chat.stream(turn, present, pings=True)
    frames = chunk_frames(completion_id, fields["model"], include_usage)
    return Response(
        events.framed(frames),
        content_type=CONTENT_TYPES[SSE],
        headers=STREAM_HEADERS,
    )


def chat_message(message: dict[str, Any]) -> ChatMessage:
    """A client's message as the providers take it (OpenAI's format):
    `developer` is passed on as `system`."""
    role = "system" if message["role"] == "developer" else message["role"]
    converted: ChatMessage = {"role": role, "content": message["content"]}
    if message.get("tool_calls"):
        converted["tool_calls"] = message["tool_calls"]
    if role == "tool":
        converted["tool_call_id"] = message["tool_call_id"]
    return converted


def assistant_message(text: str, stats: TurnStats) -> dict[str, Any]:
    """The reply's message; with tool calls, OpenAI's content is null when
    the model wrote no text."""
    calls = tool_calls_block(stats)
    if not calls:
        return {"role": "assistant", "content": text}
    return {"role": "assistant", "content": text or None, "tool_calls": calls}
