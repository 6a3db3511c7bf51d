"""POST /chat: one message in, a JSON reply or a live stream out.

A stream is text/plain tokens unless the Accept header asks for
`text/event-stream` (SSE) or `application/x-ndjson`; those two answer 200
once the first token came or STREAM_PRIME_SECONDS passed, then ping while the
model is silent and report a later failure as an `error` event.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from piagent.events import Done
from piagent.stats import ToolRecord
from piagent.web.apidoc import CONVERSATION_ID, Reply, event_stream, operation
from piagent.web.body import read_json_object
from piagent.web.client import client_probe
from piagent.web.context import services
from piagent.web.guards.auth import request_owner
from piagent.web.reply_schemas import ChatReplySchema
from piagent.web.schemas import load_or_422, sent_conversation_id
from piagent.web.streams import (
    CONTENT_TYPES,
    FORMATS,
    NDJSON,
    SSE,
    STREAM_HEADERS,
    TEXT,
    arguments_value,
    framer,
)

EVENTS = (
    "TokenEvent",
    "ToolCallEvent",
    "ToolResultEvent",
    "DoneEvent",
    "StreamErrorEvent",
)

bp = Blueprint("chat", __name__)


def stream_format() -> str:
    """text/plain unless the client prefers SSE or NDJSON; */* keeps text."""
    return request.accept_mimetypes.best_match(FORMATS, default=TEXT) or TEXT


@bp.post("/chat")
@operation(
    tag="chat",
    body=lambda found: found.chat_schema,
    replies={
        200: Reply(
            "The reply: JSON, or with `stream: true` a stream in the format the "
            "Accept header prefers.",
            ChatReplySchema,
            content={
                TEXT: {
                    "schema": {
                        "type": "string",
                        "description": "The tokens as they come; a failure after "
                        "the first ends the transfer without its last chunk.",
                    }
                },
                SSE: event_stream(
                    "Server-sent events: `event: token` (TokenEvent) per token, "
                    "with an agent's tools `event: tool_call` (ToolCallEvent) and "
                    "`event: tool_result` (ToolResultEvent) per call, then "
                    "`event: done` (DoneEvent) or `event: error` "
                    "(StreamErrorEvent); `: ping` comments while the model is "
                    "silent before its first token or after a tool's result.",
                    EVENTS,
                ),
                NDJSON: event_stream(
                    'One JSON object a line: {"event": "token", ...TokenEvent}, '
                    "tool_call (ToolCallEvent) and tool_result (ToolResultEvent), "
                    "then done (DoneEvent) or error (StreamErrorEvent); "
                    '{"event": "ping"} while the model is silent, as in SSE.',
                    EVENTS,
                ),
            },
            required_headers=(CONVERSATION_ID,),
        )
    },
    errors=(422, 502, 503, 504),
    error_headers=(CONVERSATION_ID,),
)
def chat() -> Response:
    """One message in, a JSON reply or a live stream out.

    The agent's system prompt and the conversation's recent turns go to the
    model with the message. Leave out `conversation_id` to start a new
    conversation; its id comes back in the body and in X-Conversation-Id.
    With API keys, conversations belong to the key's owner: another owner's
    id starts a conversation of the caller's own.
    """
    found = services()
    payload = read_json_object(found.settings.max_body_bytes)
    # A rejected turn still names the conversation the client meant.
    g.conversation_id = sent_conversation_id(payload)
    fields = load_or_422(found.chat_schema, payload)
    turn = found.chat.start(
        fields["message"],
        fields["agent"],
        fields["conversation_id"],
        owner=request_owner(found.keys),
    )
    g.conversation_id = turn.conversation_id
    g.turn = turn  # read by the request log when the response is closed
    present = client_probe(request.environ)
    provider = found.chat.provider_name
    if not fields["stream"]:
        reply = found.chat.reply(turn, present)
        body: dict[str, Any] = {
            "reply": reply.text,
            "conversation_id": turn.conversation_id,
            "model": reply.model,
            "provider": provider,
            "usage": turn.stats.summary(),
        }
        if turn.agent.tools is not None:
            body["tool_calls"] = [tool_record(r) for r in turn.stats.tools]
        return jsonify(body)
    media_type = stream_format()

    def done(event: Done) -> dict[str, Any]:
        return {
            "conversation_id": turn.conversation_id,
            "model": turn.agent.model,
            "provider": provider,
            "usage": event.stats.summary(),
        }

    events = found.chat.stream(turn, present, pings=media_type != TEXT)
    return Response(
        events.framed(framer(media_type, done)),
        content_type=CONTENT_TYPES[media_type],
        headers=STREAM_HEADERS,
    )


def tool_record(record: ToolRecord) -> dict[str, Any]:
    """One tool call of a JSON reply: what was asked, a short result, how long."""
    return {
        "id": record.id,
        "name": record.name,
        "arguments": arguments_value(record.arguments),
        "result": record.result,
        "error": record.error,
        "duration_s": round(record.seconds, 3),
    }


@bp.after_request
def conversation_header(response: Response) -> Response:
    """Every /chat answer names its conversation once one was resolved."""
    conversation_id = g.get("conversation_id")
    if conversation_id:
        response.headers["X-Conversation-Id"] = conversation_id
    return response
