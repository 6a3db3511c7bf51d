"""Marshmallow schemas of what /ollama answers, in Ollama's shapes (api/types.go).

They describe the OpenAPI document (and the fuzzer holds the answers to
them), like piagent.web.reply_schemas; the views build plain dicts.
"""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields, validate


def _nanoseconds(description: str) -> fields.Integer:
    # On the last line only.
    return fields.Integer(metadata={"description": description})


class OllamaReplyFunctionSchema(Schema):
    index = fields.Integer()
    name = fields.String(required=True)
    arguments = fields.Raw(
        required=True, metadata={"description": "The arguments, as a JSON object."}
    )


class OllamaReplyToolCallSchema(Schema):
    id = fields.String()
    function = fields.Nested(OllamaReplyFunctionSchema, required=True)


class OllamaReplyMessageSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(["assistant"]))
    content = fields.String(required=True)
    thinking = fields.String(metadata={"description": "The model's thinking."})
    tool_calls = fields.List(fields.Nested(OllamaReplyToolCallSchema))


class OllamaChatResponseSchema(Schema):
    """A line of the stream; the last one (`done: true`) has the counts."""

    model = fields.String(required=True, metadata={"description": "As sent."})
    created_at = fields.String(required=True, metadata={"description": "RFC 3339."})
    message = fields.Nested(OllamaReplyMessageSchema, required=True)
    done = fields.Boolean(required=True)
    done_reason = fields.String(
        validate=validate.OneOf(["stop", "length", "load"]),
        metadata={"description": "On the last line: why the reply ended."},
    )
    total_duration = _nanoseconds("Nanoseconds, the whole request.")
    load_duration = _nanoseconds("Nanoseconds loading the model.")
    prompt_eval_count = fields.Integer(metadata={"description": "Prompt tokens."})
    prompt_eval_duration = _nanoseconds("Nanoseconds reading the prompt.")
    eval_count = fields.Integer(metadata={"description": "Reply tokens."})
    eval_duration = _nanoseconds("Nanoseconds generating the reply.")


class OllamaChatReplySchema(OllamaChatResponseSchema):
    """The answer of `stream: false` (or of no messages: `done_reason: load`)."""


class OllamaErrorSchema(Schema):
    error = fields.String(required=True, metadata={"description": "What went wrong."})


class OllamaDetailsSchema(Schema):
    class Meta:
        unknown = INCLUDE

    parent_model = fields.String()
    format = fields.String()
    family = fields.String()
    families = fields.List(fields.String(), allow_none=True)
    parameter_size = fields.String()
    quantization_level = fields.String()


class OllamaModelSchema(Schema):
    """An agent as a model: `<agent>:latest`, with the details of the model
    behind it (from the model server when it says)."""

    class Meta:
        unknown = INCLUDE

    name = fields.String(required=True)
    model = fields.String(required=True)
    modified_at = fields.String(required=True)
    size = fields.Integer(required=True)
    digest = fields.String(required=True)
    details = fields.Nested(OllamaDetailsSchema, required=True)
    expires_at = fields.String(metadata={"description": "/api/ps only."})
    size_vram = fields.Integer(metadata={"description": "/api/ps only."})


class OllamaModelListSchema(Schema):
    models = fields.List(fields.Nested(OllamaModelSchema), required=True)


class OllamaShowSchema(Schema):
    class Meta:
        unknown = INCLUDE

    modelfile = fields.String()
    parameters = fields.String()
    template = fields.String()
    system = fields.String(metadata={"description": "The agent's system prompt."})
    details = fields.Nested(OllamaDetailsSchema, required=True)
    model_info = fields.Dict(required=True)
    capabilities = fields.List(fields.String(), required=True)
    modified_at = fields.String()


class OllamaVersionSchema(Schema):
    version = fields.String(required=True)


class OllamaStatusSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["success"]))
