"""Marshmallow schemas for request bodies, and their errors in the API's shape."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates

from piagent.agents import AGENT_NAME
from piagent.errors import InvalidFields

CONVERSATION_ID = r"[A-Za-z0-9._:-]{1,128}\Z"


class StrictBoolean(fields.Boolean):
    """Only JSON true/false: "no" or 0 meaning false is a guess we refuse to make."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class ChatRequestSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    message = fields.String(required=True)
    agent = fields.String(
        load_default="general",
        validate=validate.Regexp(
            AGENT_NAME.pattern + r"\Z",
            error="agent names are lower-case letters, digits, '-' and '_'",
        ),
    )
    stream = StrictBoolean(load_default=False)
    conversation_id = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(
            CONVERSATION_ID,
            error="conversation_id must be 1-128 of A-Z a-z 0-9 . _ : -",
        ),
    )

    def __init__(self, max_message_chars: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_message_chars = max_message_chars

    @validates("message")
    def _check_message(self, value: str, **kwargs: Any) -> None:
        if not value.strip():
            raise ValidationError("message must not be empty")
        if not _encodable(value):
            # JSON's \ud800 escapes decode to lone surrogates, which no model
            # (and no UTF-8 encoder) can take.
            raise ValidationError("message must be valid Unicode (no lone surrogates)")
        if len(value) > self.max_message_chars:
            raise ValidationError(
                f"message is longer than {self.max_message_chars} characters"
            )


def load_or_422(schema: Schema, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        return schema.load(payload)
    except ValidationError as exc:
        raise InvalidFields(_locate(exc.normalized_messages())) from None


def _locate(messages: Any, loc: tuple[str, ...] = ("body",)) -> list[dict[str, Any]]:
    if isinstance(messages, dict):
        return [
            item
            for key, value in messages.items()
            for item in _locate(value, (*loc, str(key)))
        ]
    if isinstance(messages, list):
        return [{"loc": list(loc), "msg": str(message)} for message in messages]
    return [{"loc": list(loc), "msg": str(messages)}]


def sent_conversation_id(payload: dict[str, Any]) -> str | None:
    """The client's conversation id when it is a valid one, whatever else in
    the body is wrong: safe to echo in a header even on a 422."""
    value = payload.get("conversation_id")
    if isinstance(value, str) and re.match(CONVERSATION_ID, value) is not None:
        return value
    return None


def conversation_id_or_422(value: str) -> str:
    """A conversation id from the URL path, held to the same pattern as /chat's."""
    if re.match(CONVERSATION_ID, value) is None:
        raise InvalidFields(
            [
                {
                    "loc": ["path", "conversation_id"],
                    "msg": "conversation_id must be 1-128 of A-Z a-z 0-9 . _ : -",
                }
            ]
        )
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
