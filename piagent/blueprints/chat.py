"""POST /chat: one message in, a JSON reply or a live stream out.

A stream is text/plain tokens unless the Accept header asks for
`text/event-stream` (SSE) or `application/x-ndjson`; those two answer 200
once the first token came or STREAM_PRIME_SECONDS passed, then ping while the
model is silent and report a later failure as an `error` event.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, g, request

from piagent.blueprints.connection import client_probe
from piagent.blueprints.json_body import read_json_object
from piagent.blueprints.stream_formats import CONTENT_TYPES, FORMATS, TEXT, framer
from piagent.events import Done
from piagent.schemas import load_or_422, sent_conversation_id

bp = Blueprint("chat", __name__)

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    # nginx would otherwise buffer the stream and deliver it at the end.
    "X-Accel-Buffering": "no",
}


def stream_format() -> str:
    """text/plain unless the client prefers SSE or NDJSON; */* keeps text."""
    return request.accept_mimetypes.best_match(FORMATS, default=TEXT) or TEXT


@bp.post("/chat")
def chat() -> Response:
    services = current_app.extensions["piagent"]
    payload = read_json_object(services.settings.max_body_bytes)
    # A rejected turn still names the conversation the client meant.
    g.conversation_id = sent_conversation_id(payload)
    fields = load_or_422(services.chat_schema, payload)
    turn = services.chat.start(
        fields["message"], fields["agent"], fields["conversation_id"]
    )
    g.conversation_id = turn.conversation_id
    g.turn = turn  # read by the request log when the response is closed
    present = client_probe(request.environ)
    provider = services.chat.provider_name
    if not fields["stream"]:
        reply = services.chat.reply(turn, present)
        # json.dumps straight into a Response: what jsonify does, minus its
        # provider lookups and argument handling (2% of a request's CPU).
        body = json.dumps(
            {
                "reply": reply.text,
                "conversation_id": turn.conversation_id,
                "model": reply.model,
                "provider": provider,
                "usage": turn.stats.summary(),
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return Response(body + "\n", mimetype="application/json")
    media_type = stream_format()

    def done(event: Done) -> dict[str, Any]:
        return {
            "conversation_id": turn.conversation_id,
            "model": turn.agent.model,
            "provider": provider,
            "usage": event.stats.summary(),
        }

    events = services.chat.stream(turn, present, pings=media_type != TEXT)
    return Response(
        events.framed(framer(media_type, done)),
        content_type=CONTENT_TYPES[media_type],
        headers=STREAM_HEADERS,
    )


@bp.after_request
def conversation_header(response: Response) -> Response:
    """Every /chat answer names its conversation once one was resolved."""
    conversation_id = g.get("conversation_id")
    if conversation_id:
        response.headers["X-Conversation-Id"] = conversation_id
    return response
