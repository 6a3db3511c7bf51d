"""GET and DELETE /conversations/<id>: read a conversation's memory, or forget it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify

from piagent.errors import ConversationNotFound
from piagent.memory import Message
from piagent.web.apidoc import Reply, operation
from piagent.web.context import services
from piagent.web.guards.auth import request_owner
from piagent.web.reply_schemas import ConversationSchema
from piagent.web.schemas import ConversationPathSchema, conversation_id_or_422
from piagent.web.streams import arguments_value

bp = Blueprint("conversations", __name__)


@bp.get("/conversations/<conversation_id>")
@operation(
    tag="conversations",
    path_schema=ConversationPathSchema,
    replies={200: Reply("The stored messages, oldest first.", ConversationSchema)},
    errors=(404, 422, 503),
)
def read(conversation_id: str) -> Response:
    """The stored window, oldest first; looking does not keep it alive.

    With API keys, only the key owner's own conversations are found: another
    owner's is a 404, like one that never existed.
    """
    conversation_id = conversation_id_or_422(conversation_id)
    chat, keys = services().chat, services().keys
    found = chat.conversation(conversation_id, request_owner(keys))
    if found is None:
        raise ConversationNotFound(
            f"conversation {conversation_id!r} is unknown or has expired"
        )
    return jsonify(
        conversation_id=found.conversation_id,
        messages=[shown(m) for m in found.messages],
        created_at=_iso(found.created_at),
        updated_at=_iso(found.updated_at),
        expires_at=_iso(found.expires_at),
    )


@bp.delete("/conversations/<conversation_id>")
@operation(
    tag="conversations",
    path_schema=ConversationPathSchema,
    replies={204: Reply("Forgotten, or there was nothing to forget.")},
    errors=(422, 503),
)
def forget(conversation_id: str) -> tuple[str, int]:
    """Forget it; a conversation that is already gone is forgotten too (204).

    With API keys, only the key owner's own: another owner's conversation of
    the same id is left as it is, and the answer is the same 204.
    """
    conversation_id = conversation_id_or_422(conversation_id)
    found = services()
    found.chat.forget(conversation_id, request_owner(found.keys))
    return "", 204


def shown(message: Message) -> dict[str, Any]:
    """A stored message as GET shows it: role and content; an assistant's tool
    calls (arguments as an object when they are one); a tool result's call
    id and tool."""
    item: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        item["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": arguments_value(c.arguments)}
            for c in message.tool_calls
        ]
    if message.role == "tool":
        item.update(tool_call_id=message.tool_call_id, name=message.name)
    return item


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")
