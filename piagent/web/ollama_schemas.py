"""Marshmallow schemas of Ollama's request bodies (/ollama), as Ollama reads them.

The fields Ollama's `api/types.go` gives a chat request, the part piagent
honours; unknown fields are ignored as Ollama ignores them. Type errors are
400s in Ollama's shape (piagent.web.errors), each naming its field.
"""

from __future__ import annotations

from typing import Any

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from piagent.settings import KEEP_ALIVE_PATTERN
from piagent.web.schemas import (
    MAX_TOOLS,
    StrictBoolean,
    StrictInteger,
    StrictNumber,
)

THINK_LEVELS = ("low", "medium", "high")


# A tool's name, wherever it appears (the offer, a call, a result's tool_name):
# one limit, so a name offered is also accepted when the history sends it back.
MAX_TOOL_NAME = 256


class Format(fields.Field[Any]):
    """`format`: "json", or a JSON schema (an object); "" and null: none."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if value in ("", None):
            return None
        if value == "json" or isinstance(value, dict):
            return value
        raise ValidationError('format must be "json" or a JSON schema object')


class Think(fields.Field[Any]):
    """`think`: true, false, or "low", "medium", "high" (gpt-oss' levels)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or value in THINK_LEVELS:
            return value
        raise ValidationError('think must be true, false, "low", "medium" or "high"')


class KeepAlive(fields.Field[Any]):
    """`keep_alive`: seconds (a number) or a Go duration such as "5m" or "-1"."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value) if float(value).is_integer() else value
        if isinstance(value, str) and KEEP_ALIVE_PATTERN.fullmatch(value.strip()):
            return value.strip()
        raise ValidationError(
            'keep_alive must be seconds or a duration such as "5m", "1h" or "-1"'
        )


class Stop(fields.Field[tuple[str, ...]]):
    """`options.stop`: a list of strings (one string is taken as a list)."""

    def _deserialize(
        self, value: Any, attr: Any, data: Any, **kwargs: Any
    ) -> tuple[str, ...]:
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ValidationError("stop must be a list of strings")


class OllamaFunctionSchema(Schema):
    """A tool's function as an Ollama client offers it. Ollama puts no rule on
    the name beyond being there, so neither does piagent (OpenAI's stricter
    rule is /v1's)."""

    class Meta:
        unknown = EXCLUDE

    name = fields.String(
        required=True, validate=validate.Length(min=1, max=MAX_TOOL_NAME)
    )
    description = fields.String(load_default=None, allow_none=True)
    parameters = fields.Dict(load_default=None, allow_none=True)

    @post_load
    def _only_given(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {key: value for key, value in data.items() if value is not None}


class OllamaToolSchema(Schema):
    """One of `tools`: a function tool, as Ollama's ToolFunction."""

    class Meta:
        unknown = EXCLUDE

    type = fields.String(
        load_default="function",
        validate=validate.OneOf(["function"], error="type must be function"),
    )
    function = fields.Nested(OllamaFunctionSchema, required=True)


class OllamaOptionsSchema(Schema):
    """`options`: the model parameters piagent passes on; the rest are ignored."""

    class Meta:
        unknown = EXCLUDE

    temperature = StrictNumber(
        load_default=None, allow_none=True, validate=validate.Range(0, 2)
    )
    top_p = StrictNumber(
        load_default=None, allow_none=True, validate=validate.Range(0, 1)
    )
    top_k = StrictInteger(
        load_default=None, allow_none=True, validate=validate.Range(0)
    )
    seed = StrictInteger(load_default=None, allow_none=True)
    stop = Stop(load_default=None, allow_none=True)
    num_predict = StrictInteger(load_default=None, allow_none=True)
    num_ctx = StrictInteger(
        load_default=None, allow_none=True, validate=validate.Range(min=1)
    )


class OllamaFunctionCallSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(
        required=True, validate=validate.Length(min=1, max=MAX_TOOL_NAME)
    )
    arguments = fields.Dict(load_default=dict)


class OllamaToolCallSchema(Schema):
    """An assistant's tool call as an Ollama client sends it back: arguments
    as an object; an `id` only if the client kept one."""

    class Meta:
        unknown = EXCLUDE

    id = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=256)
    )
    function = fields.Nested(OllamaFunctionCallSchema, required=True)


class OllamaMessageSchema(Schema):
    """One of `messages`: role and content; an assistant's `tool_calls`, a
    tool result's `tool_name` (or `tool_call_id`). Past `thinking` is
    accepted and not sent back to the model."""

    class Meta:
        unknown = EXCLUDE

    role = fields.String(
        required=True,
        validate=validate.OneOf(
            ["system", "user", "assistant", "tool"],
            error="role must be system, user, assistant or tool",
        ),
    )
    content = fields.String(load_default="", allow_none=True)
    thinking = fields.String(load_default=None, allow_none=True)
    images = fields.List(fields.String(), load_default=None, allow_none=True)
    tool_calls = fields.List(
        fields.Nested(OllamaToolCallSchema),
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=MAX_TOOLS),
    )
    tool_name = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=MAX_TOOL_NAME)
    )
    tool_call_id = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=256)
    )

    @validates_schema(skip_on_field_errors=True)
    def _check(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("images"):
            raise ValidationError(
                "images are not supported: piagent's agents read text only", "images"
            )
        if data.get("tool_calls") and data["role"] != "assistant":
            raise ValidationError("only an assistant message has tool_calls", "role")

    @post_load
    def _null_is_empty(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if data.get("content") is None:
            data["content"] = ""
        return data


class OllamaChatSchema(Schema):
    """POST /ollama/api/chat's body, as Ollama's ChatRequest."""

    class Meta:
        unknown = EXCLUDE

    model = fields.String(
        required=True,
        validate=validate.Length(min=1),
        metadata={"description": "An agent's name, with or without `:latest`."},
    )
    messages = fields.List(
        fields.Nested(OllamaMessageSchema), load_default=list, allow_none=True
    )
    tools = fields.List(
        fields.Nested(OllamaToolSchema),
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=MAX_TOOLS),
    )
    format = Format(load_default=None, allow_none=True)
    options = fields.Nested(OllamaOptionsSchema, load_default=None, allow_none=True)
    stream = StrictBoolean(load_default=True, allow_none=True)
    keep_alive = KeepAlive(load_default=None, allow_none=True)
    think = Think(load_default=None, allow_none=True)

    def __init__(self, max_message_chars: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_message_chars = max_message_chars

    @validates_schema(skip_on_field_errors=True)
    def _check_messages(self, data: dict[str, Any], **kwargs: Any) -> None:
        for message in data.get("messages") or []:
            if len(message["content"]) > self.max_message_chars:
                raise ValidationError(
                    f"a message is longer than {self.max_message_chars} characters",
                    "messages",
                )


class OllamaModelRequestSchema(Schema):
    """The body of show and pull: `model`, or `name` as older clients send it."""

    class Meta:
        unknown = EXCLUDE

    model = fields.String(load_default=None, allow_none=True)
    name = fields.String(load_default=None, allow_none=True)
    stream = StrictBoolean(load_default=True, allow_none=True)

    @validates_schema(skip_on_field_errors=True)
    def _named(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not (data.get("model") or data.get("name")):
            raise ValidationError("model is required", "model")
