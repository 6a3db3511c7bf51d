"""Marshmallow schemas for request bodies, and their errors in the API's shape."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates,
    validates_schema,
)
from marshmallow.exceptions import SCHEMA

from piagent.agents import AGENT_NAME
from piagent.errors import InvalidFields
from piagent.providers import arguments_text

# An id safe to echo in a response header: a conversation id, and the request
# log's X-Request-Id.
SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
CONVERSATION_ID_RULE = "conversation_id must be 1-128 of A-Z a-z 0-9 . _ : -"
# Marks a field that names an agent: the OpenAPI document gives it the
# configured agents as an enum.
AGENT_MARK = "x-piagent-agent"


class StrictBoolean(fields.Boolean):
    """Only JSON true/false: "no" or 0 meaning false is a guess we refuse to make."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class ChatRequestSchema(Schema):
    """POST /chat's body: message, agent, stream, conversation_id."""

    class Meta:
        unknown = EXCLUDE

    message = fields.String(required=True)
    agent = fields.String(
        load_default="general",
        validate=validate.Regexp(
            AGENT_NAME.pattern + r"\Z",
            error="agent names are lower-case letters, digits, '-' and '_'",
        ),
        # The OpenAPI document lists the configured agents here.
        metadata={AGENT_MARK: True},
    )
    stream = StrictBoolean(load_default=False)
    conversation_id = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(SAFE_ID.pattern + r"\Z", error=CONVERSATION_ID_RULE),
    )

    def __init__(self, max_message_chars: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_message_chars = max_message_chars
        # What _check_message holds it to, for the OpenAPI document: some
        # non-blank character, and the instance's own limit.
        self.fields["message"].metadata = {
            "maxLength": max_message_chars,
            "pattern": r"\S",
        }

    @validates("message")
    def _check_message(self, value: str, **kwargs: Any) -> None:
        if not value.strip():
            raise ValidationError("message must not be empty")
        if len(value) > self.max_message_chars:
            raise ValidationError(
                f"message is longer than {self.max_message_chars} characters"
            )


class StrictNumber(fields.Float):
    """A JSON number: "0.5" or true are refused, not converted."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class StrictInteger(fields.Integer):
    """A JSON integer: 5.0, "5" or true are refused."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid", input=value)
        return value


class MessageContent(fields.Field[str]):
    """A message's text: a string, or a list of text parts joined (no images)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(
            isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
            for part in value
        ):
            return "".join(part["text"] for part in value)
        raise ValidationError(
            'content must be a string or a list of {"type": "text", "text"} '
            "parts; piagent's models read text only"
        )


# OpenAI's rule for a function's name.
FUNCTION_NAME = r"[A-Za-z0-9_-]{1,64}"
# Tools one /v1 request may offer, and tool calls one message may carry.
MAX_TOOLS = 64


class ToolArguments(fields.Field[str]):
    """A call's arguments: JSON text, as OpenAI sends them; an object (some
    clients send one) is written as compact JSON text."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            return arguments_text(value)
        raise ValidationError("arguments must be a string of JSON (or an object)")


class CalledFunctionSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    arguments = ToolArguments(required=True)


class MessageToolCallSchema(Schema):
    """A tool call in an assistant message the client sends back."""

    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True, validate=validate.Length(min=1, max=256))
    type = fields.String(
        load_default="function",
        validate=validate.OneOf(["function"], error="type must be function"),
    )
    function = fields.Nested(CalledFunctionSchema, required=True)


class ChatMessageSchema(Schema):
    """One of /v1's `messages`: a role and text content; an assistant's
    `tool_calls`, a tool result's `tool_call_id`."""

    class Meta:
        unknown = EXCLUDE

    role = fields.String(
        required=True,
        validate=validate.OneOf(
            ["system", "developer", "user", "assistant", "tool"],
            error="role must be system, developer, user, assistant or tool",
        ),
    )
    content = MessageContent(
        allow_none=True,
        metadata={
            "description": "Required, except in an assistant message with "
            "tool_calls (as OpenAI's API has it); null is empty text."
        },
    )
    tool_calls = fields.List(
        fields.Nested(MessageToolCallSchema),
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=MAX_TOOLS),
    )
    tool_call_id = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=256)
    )

    @validates_schema(skip_on_field_errors=True)
    def _check_tool_fields(self, data: dict[str, Any], **kwargs: Any) -> None:
        role = data["role"]
        if "content" not in data and not (
            role == "assistant" and data.get("tool_calls")
        ):
            raise ValidationError("Missing data for required field.", "content")
        if data.get("tool_calls") and role != "assistant":
            raise ValidationError("only an assistant message has tool_calls", "role")
        if role == "tool" and not data.get("tool_call_id"):
            raise ValidationError(
                "a tool message needs the tool_call_id of the call it answers",
                "tool_call_id",
            )

    @post_load
    def _null_is_empty(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # allow_none hands None through without MessageContent seeing it;
        # OpenAI's clients send null content for some assistant turns.
        if data.get("content") is None:
            data["content"] = ""
        return data


class FunctionSchema(Schema):
    """A tool's function as a /v1 client offers it; passed on as it is."""

    class Meta:
        unknown = EXCLUDE

    name = fields.String(
        required=True,
        validate=validate.Regexp(
            FUNCTION_NAME + r"\Z",
            error="a function name is 1-64 of A-Z a-z 0-9 _ -",
        ),
    )
    description = fields.String(load_default=None)
    parameters = fields.Dict(load_default=None)
    strict = StrictBoolean(load_default=None, allow_none=True)

    @post_load
    def _only_given(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {key: value for key, value in data.items() if value is not None}


class ToolSchema(Schema):
    """One of /v1's `tools`: OpenAI's function tool."""

    class Meta:
        unknown = EXCLUDE

    type = fields.String(
        required=True,
        validate=validate.OneOf(["function"], error="type must be function"),
    )
    function = fields.Nested(FunctionSchema, required=True)


class ToolChoice(fields.Field[Any]):
    """`tool_choice`: "none", "auto", "required", or a named function."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if value in ("none", "auto", "required"):
            return value
        if not isinstance(value, dict):
            value = {}
        function = value.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if value.get("type") == "function" and isinstance(name, str) and name:
            return {"type": "function", "function": {"name": name}}
        raise ValidationError(
            'tool_choice must be "none", "auto", "required" or '
            '{"type": "function", "function": {"name": ...}}'
        )


class StreamOptionsSchema(Schema):
    """/v1's stream_options: only include_usage is honoured."""

    class Meta:
        unknown = EXCLUDE

    include_usage = StrictBoolean(load_default=False)


class ChatCompletionSchema(Schema):
    """OpenAI's chat completion request, the part piagent honours; other
    fields (top_p, stop, user, ...) are ignored like unknown /chat fields."""

    class Meta:
        unknown = EXCLUDE

    model = fields.String(
        required=True, validate=validate.Length(min=1), metadata={AGENT_MARK: True}
    )
    messages = fields.List(
        fields.Nested(ChatMessageSchema),
        required=True,
        validate=validate.Length(min=1, error="messages must not be empty"),
    )
    temperature = StrictNumber(
        load_default=None, allow_none=True, validate=validate.Range(0, 2)
    )
    max_tokens = StrictInteger(
        load_default=None, allow_none=True, validate=validate.Range(min=1)
    )
    max_completion_tokens = StrictInteger(
        load_default=None, allow_none=True, validate=validate.Range(min=1)
    )
    n = StrictInteger(
        load_default=1,
        allow_none=True,
        validate=validate.Equal(1, error="only n=1 is supported"),
    )
    stream = StrictBoolean(load_default=False, allow_none=True)
    stream_options = fields.Nested(
        StreamOptionsSchema, load_default=None, allow_none=True
    )
    tools = fields.List(
        fields.Nested(ToolSchema),
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=MAX_TOOLS),
    )
    tool_choice = ToolChoice(load_default=None, allow_none=True)
    parallel_tool_calls = StrictBoolean(load_default=None, allow_none=True)

    def __init__(self, max_message_chars: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_message_chars = max_message_chars

    @validates_schema(skip_on_field_errors=True)
    def _check_messages(self, data: dict[str, Any], **kwargs: Any) -> None:
        # A schema validator: it runs only once every message deserialized.
        value = data["messages"]
        for message in value:
            if len(message["content"]) > self.max_message_chars:
                raise ValidationError(
                    f"a message is longer than {self.max_message_chars} characters",
                    "messages",
                )
        if not any(message["content"].strip() for message in value):
            raise ValidationError("messages must contain some text", "messages")


class ConversationPathSchema(Schema):
    """The path of /conversations/<conversation_id>, for the OpenAPI document;
    conversation_id_or_422 holds it to the same pattern."""

    conversation_id = fields.String(
        required=True,
        validate=validate.Regexp(SAFE_ID.pattern + r"\Z", error=CONVERSATION_ID_RULE),
    )


def load_or_422(schema: Schema, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = schema.load(payload)
    except ValidationError as exc:
        # ValidationError.normalized_messages(), which is untyped.
        messages = exc.messages
        if not (exc.field_name == SCHEMA and isinstance(messages, dict)):
            messages = {exc.field_name: messages}
        raise InvalidFields(_locate(messages)) from None
    return loaded


def _locate(messages: Any, loc: tuple[str, ...] = ("body",)) -> list[dict[str, Any]]:
    if isinstance(messages, dict):
        # A nested object of the wrong type is reported under marshmallow's
        # "_schema": the field itself is the place to name.
        return [
            item
            for key, value in messages.items()
            for item in _locate(value, loc if key == SCHEMA else (*loc, str(key)))
        ]
    if isinstance(messages, list):
        return [{"loc": list(loc), "msg": str(message)} for message in messages]
    return [{"loc": list(loc), "msg": str(messages)}]


def sent_conversation_id(payload: dict[str, Any]) -> str | None:
    """The client's conversation id when it is a valid one, whatever else in
    the body is wrong: safe to echo in a header even on a 422."""
    value = payload.get("conversation_id")
    if isinstance(value, str) and SAFE_ID.fullmatch(value) is not None:
        return value
    return None


def conversation_id_or_422(value: str) -> str:
    """A conversation id from the URL path, held to the same pattern as /chat's."""
    if SAFE_ID.fullmatch(value) is None:
        raise InvalidFields(
            [
                {
                    "loc": ["path", "conversation_id"],
                    "msg": CONVERSATION_ID_RULE,
                }
            ]
        )
    return value
