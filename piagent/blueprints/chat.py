"""POST /chat: one message in, a JSON reply or a live text stream out."""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, g, request

from piagent.blueprints.connection import client_probe
from piagent.blueprints.json_body import read_json_object
from piagent.schemas import load_or_422

bp = Blueprint("chat", __name__)

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    # nginx would otherwise buffer the stream and deliver it at the end.
    "X-Accel-Buffering": "no",
}


@bp.post("/chat")
def chat() -> Response:
    services = current_app.extensions["piagent"]
    payload = read_json_object(services.settings.max_body_bytes)
    fields = load_or_422(services.chat_schema, payload)
    turn = services.chat.start(
        fields["message"], fields["agent"], fields["conversation_id"]
    )
    g.conversation_id = turn.conversation_id
    g.turn = turn  # read by the request log when the response is closed
    present = client_probe(request.environ)
    if not fields["stream"]:
        reply = services.chat.reply(turn, present)
        # json.dumps straight into a Response: what jsonify does, minus its
        # provider lookups and argument handling (2% of a request's CPU).
        body = json.dumps(
            {
                "reply": reply.text,
                "conversation_id": turn.conversation_id,
                "model": reply.model,
                "provider": services.chat.provider_name,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return Response(body + "\n", mimetype="application/json")
    tokens = services.chat.stream(turn, present)
    return Response(
        tokens, content_type="text/plain; charset=utf-8", headers=STREAM_HEADERS
    )


@bp.after_request
def conversation_header(response: Response) -> Response:
    """Every /chat answer names its conversation once one was resolved."""
    conversation_id = g.get("conversation_id")
    if conversation_id:
        response.headers["X-Conversation-Id"] = conversation_id
    return response
