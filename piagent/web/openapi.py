"""The OpenAPI 3.1 document of one app, built by apispec from the schemas.

Imported only when /openapi.json is first asked for (apispec and its
marshmallow plugin are then loaded into the worker), and built once per app:
every registered route whose view carries an `apidoc.operation` record
becomes an operation; the error answers come from one table below; the agent
names are the app's own, as an enum. Nothing here is served per request.
"""

from __future__ import annotations

import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import Schema, fields, validate

from piagent import __version__
from piagent.web import ollama_replies
from piagent.web import reply_schemas as replies
from piagent.web.apidoc import CONVERSATION_ID, RETRY_AFTER, Operation, described
from piagent.web.context import EXTENSION
from piagent.web.errors import (
    OPENAI_PREFIX,
    is_ollama_path,
    ollama_status,
    openai_status,
)
from piagent.web.guards.auth import is_public_view
from piagent.web.guards.origin import SAFE_METHODS
from piagent.web.guards.rate_limits import is_unlimited_view
from piagent.web.schemas import AGENT_MARK

OPENAPI_VERSION = "3.1.0"
SKIPPED_METHODS = {"HEAD", "OPTIONS"}
RULE_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")

# Every error status piagent answers, said once; a view lists those it can give.
ERRORS = {
    400: "The Host header names a host not in ALLOWED_HOSTS; or the body is not "
    "valid JSON, not a JSON object, not valid Unicode, or was cut short. Under /v1 "
    "and /ollama also every other request a client can fix.",
    401: "API keys are configured and the request has none or a wrong one.",
    403: "The request's Origin is another site's: neither this server's own origin "
    "nor in CORS_ORIGINS.",
    404: "No such thing (see the operation).",
    413: "The body is larger than MAX_BODY_BYTES (also when sent chunked).",
    415: "Content-Type is not application/json.",
    422: "A field is invalid; `detail` lists each as {loc, msg}.",
    429: "A rate limit is used up; Retry-After says when it frees.",
    502: "The model server is unreachable, lacks the model, or failed.",
    503: "Memory is unavailable, too many generations wait, or the model server "
    "is busy; Retry-After says when to try again.",
    501: "Not offered by piagent (Ollama's model management and raw generation).",
    504: "The model server sent nothing within MODEL_TIMEOUT, or the generation "
    "outlived MAX_GENERATION_SECONDS.",
}
# On every answer of a view that rate limits apply to, when some are set.
RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
ERROR_HEADERS = {
    401: ("WWW-Authenticate",),
    429: (RETRY_AFTER,),
    503: (RETRY_AFTER,),
}
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-Id": {
        "description": "The request's id in piagent's log (the client's own "
        "X-Request-Id when it is safe to echo).",
        "schema": {"type": "string"},
    },
    CONVERSATION_ID: {
        "description": "The conversation of a /chat answer, once one is known.",
        "schema": {"type": "string"},
    },
    RETRY_AFTER: {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "WWW-Authenticate": {
        "description": 'Bearer realm="piagent", with error="invalid_token" for a '
        "wrong key.",
        "schema": {"type": "string"},
    },
    "X-RateLimit-Limit": {
        "description": "Requests allowed in the window.",
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Remaining": {
        "description": "Requests left in the window.",
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Reset": {
        "description": "When the window frees, in epoch seconds.",
        "schema": {"type": "integer"},
    },
}
SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from API_KEYS or API_KEYS_FILE, when any is set.",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same key, for clients whose proxy keeps Authorization.",
    },
}
DESCRIPTION = """A small HTTP agent server in front of a local model (Ollama or an
OpenAI-compatible server). Every endpoint except the public ones (/health, the chat
page, this document) needs an API key when keys are configured, sent as
`Authorization: Bearer <key>` or `X-API-Key: <key>`. Errors are JSON `{"detail"}`
(OpenAI's `{"error"}` under /v1, Ollama's `{"error"}` under /ollama)."""


def _python_pattern_to_ecma(
    converter: Any, field: Any, **kwargs: Any
) -> dict[str, str]:
    """marshmallow validates with Python's `\\Z` (no newline before the end);
    JSON Schema reads ECMA regexes, where the same is `^...$`."""
    for validator in field.validators:
        if isinstance(validator, validate.Regexp):
            pattern = str(validator.regex.pattern)
            if pattern.endswith(r"\Z"):
                return {"pattern": f"^(?:{pattern[:-2]})$"}
            return {"pattern": pattern}
    return {}


def _constant_null(converter: Any, field: Any, **kwargs: Any) -> dict[str, str]:
    if isinstance(field, fields.Constant) and field.constant is None:
        return {"type": "null"}
    return {}


def _schema_name(schema: Any) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__.removesuffix("Schema")


def build_document(app: Flask) -> dict[str, Any]:
    """The document of `app`'s registered routes."""
    plugin = MarshmallowPlugin(schema_name_resolver=_schema_name)
    spec = APISpec(
        title="piagent",
        version=__version__,
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": DESCRIPTION},
        security=[{"bearer": []}, {"apiKey": []}],
    )
    assert plugin.converter is not None
    # apispec's converter is untyped; these are its documented extension hooks.
    plugin.converter.add_attribute_function(_python_pattern_to_ecma)  # type: ignore[no-untyped-call]
    plugin.converter.add_attribute_function(_constant_null)  # type: ignore[no-untyped-call]
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    for name, header in HEADERS.items():
        spec.components.header(name, header)
    for schema in (
        replies.TokenEventSchema,
        replies.ToolCallEventSchema,
        replies.ToolResultEventSchema,
        replies.DoneEventSchema,
        replies.StreamErrorEventSchema,
        replies.ChatCompletionChunkSchema,
        replies.OpenAIErrorSchema,
        ollama_replies.OllamaChatResponseSchema,
        ollama_replies.OllamaErrorSchema,
        ollama_replies.OllamaStatusSchema,
    ):
        spec.components.schema(_schema_name(schema), schema=schema)
    found = app.extensions[EXTENSION]
    paths: dict[str, dict[str, dict[str, Any]]] = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        record = described(view)
        if record is None:
            continue
        path = RULE_ARGUMENT.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - SKIPPED_METHODS):
            operations = paths.setdefault(path, {})
            operations[method.lower()] = _operation(
                record,
                rule,
                path,
                method,
                is_public_view(view),
                found,
                unlimited=is_unlimited_view(view),
            )
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    _agents_as_enum(document, list(found.chat.agent_names()))
    return document


def _agents_as_enum(node: Any, agents: list[str]) -> None:
    """Fields marked x-piagent-agent list the configured agents."""
    if isinstance(node, dict):
        if node.pop(AGENT_MARK, None):
            node["enum"] = agents
        for value in node.values():
            _agents_as_enum(value, agents)
    elif isinstance(node, list):
        for value in node:
            _agents_as_enum(value, agents)


def _operation(
    record: Operation,
    rule: Any,
    path: str,
    method: str,
    public: bool,
    found: Any,
    unlimited: bool = False,
) -> dict[str, Any]:
    openai = path.startswith(OPENAI_PREFIX)
    ollama = is_ollama_path(path)
    operation: dict[str, Any] = {
        "tags": [record.tag],
        "summary": record.summary,
        "operationId": f"{rule.endpoint.replace('.', '_')}",
        "responses": {},
    }
    if record.description:
        operation["description"] = record.description
    if public:
        operation["security"] = []
    if record.path_schema is not None:
        operation["parameters"] = [{"in": "path", "schema": record.path_schema}]
    elif rule.arguments:
        operation["parameters"] = [
            {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
            for name in sorted(rule.arguments)
        ]
    if record.body is not None:
        body = record.body
        if not isinstance(body, type | Schema):
            body = body(found)  # a schema built from settings, kept in services
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    limited = () if public or unlimited else RATE_LIMIT_HEADERS
    for status, reply in record.replies.items():
        operation["responses"][str(status)] = _reply(reply, limited)
    # Every request may name a host not allowed; a POST or DELETE may come
    # from another site's page.
    errors = set(record.errors) | {400}
    if method not in SAFE_METHODS:
        errors.add(403)
    if record.body is not None:
        errors |= {413, 415}
    if not public:
        errors |= {401} if unlimited else {401, 429}
    if openai:
        errors = {openai_status(status) for status in errors}
    if ollama:
        errors = {ollama_status(status) for status in errors}
    for status in sorted(errors):
        # Headers such as X-Conversation-Id come once the body was read, so
        # on the view's own errors, not on the guards' or the body reader's.
        extra = record.error_headers if status in record.errors else ()
        dialect = "openai" if openai else "ollama" if ollama else ""
        operation["responses"][str(status)] = _error(status, extra + limited, dialect)
    return operation


def _headers(names: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
    found: dict[str, Any] = {
        "X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}
    }
    for name in names:
        found[name] = {"$ref": f"#/components/headers/{name}"}
    for name in required:
        found[name] = {**HEADERS[name], "required": True}
    return found


def _reply(reply: Any, limited: tuple[str, ...]) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": reply.description,
        "headers": _headers(reply.headers + limited, reply.required_headers),
    }
    content = {}
    if reply.schema is not None:
        content["application/json"] = {"schema": reply.schema}
    content.update({media: dict(value) for media, value in reply.content.items()})
    if content:
        answer["content"] = content
    return answer


def _error(status: int, extra: tuple[str, ...], dialect: str) -> dict[str, Any]:
    schema: type[Schema] = replies.ErrorSchema
    if dialect == "openai":
        schema = replies.OpenAIErrorSchema
    elif dialect == "ollama":
        schema = ollama_replies.OllamaErrorSchema
    elif status == 422:
        schema = replies.ValidationErrorSchema
    return {
        "description": ERRORS[status],
        "headers": _headers(ERROR_HEADERS.get(status, ()) + extra),
        "content": {"application/json": {"schema": schema}},
    }
