"""Marshmallow schemas of what piagent answers: bodies, stream events, errors.

They describe (the OpenAPI document is built from them) rather than
serialize: views keep building their dicts, which costs no marshmallow time
per request, and the schema-driven fuzzer (tests/test_openapi_fuzz.py) checks
every answer against these schemas, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate


def _text(description: str, **kwargs: Any) -> fields.String:
    return fields.String(required=True, metadata={"description": description}, **kwargs)


def _count(description: str) -> fields.Integer:
    """A count the model server may not have sent: always present, maybe null."""
    return fields.Integer(
        allow_none=True, required=True, metadata={"description": description}
    )


def _rate(description: str) -> fields.Float:
    return fields.Float(
        allow_none=True, required=True, metadata={"description": description}
    )


class UsageSchema(Schema):
    prompt_tokens = _count("The model server's prompt count, cached part included.")
    cached_prompt_tokens = _count(
        "Of prompt_tokens, those the model server reused from its prompt cache."
    )
    reply_tokens = _count("The model server's reply count.")
    ttft_s = _rate("Seconds from taking the request to the first token.")
    tokens_per_s = _rate("Generation rate after the first token.")


def _arguments() -> fields.Raw:
    return fields.Raw(
        required=True,
        metadata={
            "description": "The arguments the model sent: a JSON object, or its "
            "text as a string when it was not one (the call then failed).",
            "oneOf": [{"type": "object"}, {"type": "string"}],
        },
    )


def _seconds(description: str) -> fields.Float:
    return fields.Float(required=True, metadata={"description": description})


class TokenEventSchema(Schema):
    text = _text("The next piece of the reply.")


class ToolCallEventSchema(Schema):
    id = _text("The call's id; its tool_result carries the same.")
    name = _text("The tool the model asked for.")
    arguments = _arguments()


class ToolResultEventSchema(Schema):
    id = _text("The id of the call this answers.")
    name = _text("The tool.")
    result = _text(
        "The start of the result (200 characters at most; the model reads all of "
        'it); a failure is {"error": "..."}.'
    )
    error = fields.Boolean(
        required=True, metadata={"description": "Whether the call failed."}
    )
    duration_s = _seconds("How long the tool took.")


class DoneEventSchema(Schema):
    conversation_id = _text("The conversation this exchange belongs to.")
    model = _text("The model that answered.")
    provider = _text("ollama or openai.")
    usage = fields.Nested(UsageSchema, required=True)


class ToolCallRecordSchema(ToolResultEventSchema):
    """A call of the JSON reply's `tool_calls`: the result event, with the
    call's arguments."""

    id = _text("The call's id.")
    arguments = _arguments()


class ChatReplySchema(Schema):
    reply = _text("The model's whole reply (with tools: the text of every round).")
    conversation_id = _text("Pass it back to continue the conversation.")
    model = _text("The model that answered.")
    provider = _text("ollama or openai.")
    usage = fields.Nested(UsageSchema, required=True)
    tool_calls = fields.List(
        fields.Nested(ToolCallRecordSchema),
        metadata={
            "description": "Only for an agent with tools: the calls this turn ran, "
            "in order (empty if none)."
        },
    )


class StreamErrorEventSchema(Schema):
    status = fields.Integer(
        required=True, metadata={"description": "The status it would have had."}
    )
    detail = _text("What went wrong.")


class MessageSchema(Schema):
    role = fields.String(
        required=True, validate=validate.OneOf(["user", "assistant", "tool"])
    )
    content = fields.String(required=True)
    tool_calls = fields.List(
        fields.Nested(ToolCallEventSchema),
        metadata={"description": "An assistant message's tool calls, if it made any."},
    )
    tool_call_id = fields.String(
        metadata={"description": "A tool message: the call it answers."}
    )
    name = fields.String(metadata={"description": "A tool message: the tool."})


class ConversationSchema(Schema):
    conversation_id = fields.String(required=True)
    messages = fields.List(fields.Nested(MessageSchema), required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True)


class HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class AgentsSchema(Schema):
    agents = fields.List(fields.String(), required=True)


class ModelStateSchema(Schema):
    pulled = fields.Boolean(required=True)
    loaded = fields.Boolean(required=True)


class HostStateSchema(Schema):
    url = _text("The model host's base URL, as configured.")
    state = fields.String(
        required=True,
        validate=validate.OneOf(["up", "down"]),
        metadata={"description": "down: left out after a failure, for a cooldown."},
    )
    models = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "The agents' models this host serves now."},
    )
    detail = fields.String(metadata={"description": "Why it is down."})


class ReadySchema(Schema):
    status = fields.String(
        required=True, validate=validate.OneOf(["ready", "not ready"])
    )
    detail = fields.String(metadata={"description": "Why it is not ready."})
    models = fields.Dict(
        keys=fields.String(), values=fields.Nested(ModelStateSchema), required=True
    )
    hosts = fields.List(
        fields.Nested(HostStateSchema),
        metadata={"description": "With several model hosts only: each of them."},
    )


class ErrorSchema(Schema):
    detail = _text("What went wrong, for a person.")


class FieldErrorSchema(Schema):
    loc = fields.List(
        fields.String(),
        required=True,
        metadata={"description": 'Where: ["body", field] or ["path", name].'},
    )
    msg = _text("What is wrong with it.")


class ValidationErrorSchema(Schema):
    detail = fields.List(fields.Nested(FieldErrorSchema), required=True)


# --- OpenAI's shapes (/v1) ------------------------------------------------------


class OpenAIModelSchema(Schema):
    id = _text("An agent's name.")
    object = fields.String(required=True, validate=validate.OneOf(["model"]))
    created = fields.Integer(required=True)
    owned_by = fields.String(required=True)


class OpenAIModelListSchema(Schema):
    object = fields.String(required=True, validate=validate.OneOf(["list"]))
    data = fields.List(fields.Nested(OpenAIModelSchema), required=True)


class PromptTokensDetailsSchema(Schema):
    cached_tokens = fields.Integer(
        required=True,
        metadata={"description": "Prompt tokens the model server took from its cache."},
    )


class OpenAIUsageSchema(Schema):
    prompt_tokens = fields.Integer(required=True)
    completion_tokens = fields.Integer(required=True)
    total_tokens = fields.Integer(required=True)
    prompt_tokens_details = fields.Nested(
        PromptTokensDetailsSchema,
        metadata={"description": "Only when the model server said what it reused."},
    )


class FunctionCallSchema(Schema):
    name = fields.String(required=True)
    arguments = fields.String(
        required=True, metadata={"description": "The arguments, as JSON text."}
    )


class ToolCallSchema(Schema):
    id = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(["function"]))
    function = fields.Nested(FunctionCallSchema, required=True)


class AssistantMessageSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(["assistant"]))
    content = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Null when the model only called tools."},
    )
    tool_calls = fields.List(
        fields.Nested(ToolCallSchema),
        metadata={
            "description": "Calls of the request's tools, for the client to run."
        },
    )


FINISH_REASONS = ["stop", "length", "tool_calls"]


class ChoiceSchema(Schema):
    index = fields.Integer(required=True)
    message = fields.Nested(AssistantMessageSchema, required=True)
    logprobs = fields.Constant(None, required=True, metadata={"type": "null"})
    finish_reason = fields.String(
        required=True, validate=validate.OneOf(FINISH_REASONS)
    )


class ChatCompletionReplySchema(Schema):
    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.OneOf(["chat.completion"]))
    created = fields.Integer(required=True)
    model = fields.String(required=True)
    choices = fields.List(fields.Nested(ChoiceSchema), required=True)
    usage = fields.Nested(OpenAIUsageSchema, required=True, allow_none=True)


class DeltaFunctionSchema(Schema):
    name = fields.String()
    arguments = fields.String()


class DeltaToolCallSchema(Schema):
    index = fields.Integer(required=True)
    id = fields.String()
    type = fields.String(validate=validate.OneOf(["function"]))
    function = fields.Nested(DeltaFunctionSchema)


class DeltaSchema(Schema):
    role = fields.String(validate=validate.OneOf(["assistant"]))
    content = fields.String()
    tool_calls = fields.List(
        fields.Nested(DeltaToolCallSchema),
        metadata={
            "description": "A tool call: piagent sends each whole, in one delta."
        },
    )


class ChunkChoiceSchema(Schema):
    index = fields.Integer(required=True)
    delta = fields.Nested(DeltaSchema, required=True)
    logprobs = fields.Constant(None, required=True, metadata={"type": "null"})
    finish_reason = fields.String(
        required=True, allow_none=True, validate=validate.OneOf(FINISH_REASONS)
    )


class ChatCompletionChunkSchema(Schema):
    id = fields.String(required=True)
    object = fields.String(
        required=True, validate=validate.OneOf(["chat.completion.chunk"])
    )
    created = fields.Integer(required=True)
    model = fields.String(required=True)
    choices = fields.List(fields.Nested(ChunkChoiceSchema), required=True)
    usage = fields.Nested(
        OpenAIUsageSchema,
        allow_none=True,
        metadata={"description": "With stream_options.include_usage only."},
    )


class OpenAIErrorBodySchema(Schema):
    message = fields.String(required=True)
    type = fields.String(required=True)
    param = fields.String(required=True, allow_none=True)
    code = fields.String(required=True, allow_none=True)


class OpenAIErrorSchema(Schema):
    error = fields.Nested(OpenAIErrorBodySchema, required=True)
