"""The one place where an exception becomes a status and a JSON body.

Three dialects of the same mapping: `{"detail": ...}` everywhere; under /v1/
OpenAI's `{"error": {"message", "type", "param", "code"}}`, where every other
4xx a client can fix is a 400, as OpenAI's clients expect (OPENAI_KINDS below);
under /ollama Ollama's `{"error": "..."}`, where a 422 is Ollama's 400. A stream
that already sent its 200 reports a failure as an event built from
`stream_error()`, `openai_error_body()` or `ollama_error_body()`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from flask import Flask, Response, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException

from piagent.errors import (
    ClientGone,
    ContextTooLong,
    ForeignOrigin,
    GenerationTimeout,
    HostNotAllowed,
    InvalidFields,
    MemoryUnavailable,
    ModelMissing,
    PiagentError,
    ProviderBusy,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
    QueueFull,
    RequestError,
    StateUnavailable,
    Unauthorized,
    UnknownModel,
)

log = logging.getLogger("piagent")


class OpenAIType(StrEnum):
    """OpenAI's error `type`: whose fault it was."""

    INVALID_REQUEST = "invalid_request_error"
    SERVER = "server_error"
    RATE_LIMIT = "requests"


class OpenAICode(StrEnum):
    """OpenAI's error `code`, where it has one for the case (else null)."""

    INVALID_VALUE = "invalid_value"
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    INVALID_API_KEY = "invalid_api_key"
    HOST_NOT_ALLOWED = "host_not_allowed"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    MODEL_NOT_FOUND = "model_not_found"
    CLIENT_GONE = "client_gone"
    MEMORY_UNAVAILABLE = "memory_unavailable"
    QUEUE_FULL = "queue_full"
    STATE_UNAVAILABLE = "state_unavailable"
    MODEL_SERVER_ERROR = "model_server_error"
    MODEL_SERVER_UNREACHABLE = "model_server_unreachable"
    MODEL_MISSING = "model_missing"
    MODEL_SERVER_BUSY = "model_server_busy"
    MODEL_SERVER_TIMEOUT = "model_server_timeout"
    GENERATION_TIMEOUT = "generation_timeout"
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"


# OpenAI's error `type` and `code` per error class (the nearest ancestor wins).
OPENAI_KINDS: dict[type[PiagentError], tuple[OpenAIType, OpenAICode | None]] = {
    PiagentError: (OpenAIType.SERVER, None),
    RequestError: (OpenAIType.INVALID_REQUEST, None),
    InvalidFields: (OpenAIType.INVALID_REQUEST, OpenAICode.INVALID_VALUE),
    ContextTooLong: (OpenAIType.INVALID_REQUEST, OpenAICode.CONTEXT_LENGTH_EXCEEDED),
    Unauthorized: (OpenAIType.INVALID_REQUEST, OpenAICode.INVALID_API_KEY),
    HostNotAllowed: (OpenAIType.INVALID_REQUEST, OpenAICode.HOST_NOT_ALLOWED),
    ForeignOrigin: (OpenAIType.INVALID_REQUEST, OpenAICode.ORIGIN_NOT_ALLOWED),
    UnknownModel: (OpenAIType.INVALID_REQUEST, OpenAICode.MODEL_NOT_FOUND),
    ClientGone: (OpenAIType.INVALID_REQUEST, OpenAICode.CLIENT_GONE),
    MemoryUnavailable: (OpenAIType.SERVER, OpenAICode.MEMORY_UNAVAILABLE),
    QueueFull: (OpenAIType.SERVER, OpenAICode.QUEUE_FULL),
    StateUnavailable: (OpenAIType.SERVER, OpenAICode.STATE_UNAVAILABLE),
    ProviderError: (OpenAIType.SERVER, OpenAICode.MODEL_SERVER_ERROR),
    ProviderUnreachable: (OpenAIType.SERVER, OpenAICode.MODEL_SERVER_UNREACHABLE),
    ModelMissing: (OpenAIType.SERVER, OpenAICode.MODEL_MISSING),
    ProviderBusy: (OpenAIType.SERVER, OpenAICode.MODEL_SERVER_BUSY),
    ProviderTimeout: (OpenAIType.SERVER, OpenAICode.MODEL_SERVER_TIMEOUT),
    GenerationTimeout: (OpenAIType.SERVER, OpenAICode.GENERATION_TIMEOUT),
}
# Statuses OpenAI's clients know by name; any other 4xx becomes a 400 there.
OPENAI_STATUSES = frozenset({400, 401, 403, 404, 405, 409, 429, 499})
OPENAI_PREFIX = "/v1/"
OLLAMA_PREFIX = "/ollama"


def json_response(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def error_response(
    status: int, detail: Any, headers: Mapping[str, str] | None = None
) -> Response:
    return json_response(status, {"detail": detail}, headers)


def stream_error(exc: PiagentError) -> dict[str, Any]:
    """A failure inside an SSE/NDJSON /chat stream: the status it would have had."""
    return {"status": exc.status, "detail": exc.detail}


def _message_and_param(detail: Any) -> tuple[str, str | None]:
    """InvalidFields' list of {"loc", "msg"} as one message and its first field."""
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        fields = [".".join(map(str, item.get("loc", [])[1:])) for item in detail]
        message = "; ".join(
            f"{name}: {item.get('msg')}" if name else str(item.get("msg"))
            for name, item in zip(fields, detail, strict=True)
        )
        return message, fields[0] or None
    return str(detail), None


def openai_error_body(
    exc: PiagentError | None = None,
    *,
    message: str | None = None,
    kind: OpenAIType = OpenAIType.SERVER,
    code: OpenAICode | None = None,
) -> dict[str, Any]:
    """OpenAI's error object, for an answer or a `data:` event in a stream."""
    param = None
    if exc is not None:
        kind, code = next(
            OPENAI_KINDS[cls]
            for cls in type(exc).__mro__
            if issubclass(cls, PiagentError) and cls in OPENAI_KINDS
        )
        message, param = _message_and_param(exc.detail)
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_status(status: int) -> int:
    return status if status >= 500 or status in OPENAI_STATUSES else 400


def ollama_status(status: int) -> int:
    """Ollama answers a request it cannot take with a 400, never a 422."""
    return 400 if status == 422 else status


def ollama_error_body(exc: PiagentError) -> dict[str, str]:
    """Ollama's error object, for an answer or the last line of a stream."""
    return {"error": _message_and_param(exc.detail)[0]}


def is_ollama_path(path: str) -> bool:
    return path == OLLAMA_PREFIX or path.startswith(OLLAMA_PREFIX + "/")


def _ollama_dialect() -> bool:
    return has_request_context() and is_ollama_path(request.path)


def _openai_dialect() -> bool:
    return has_request_context() and request.path.startswith(OPENAI_PREFIX)


def _openai_response(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    return json_response(openai_status(status), body, headers)


def _piagent_error(exc: PiagentError) -> Response:
    if isinstance(exc, ProviderError | MemoryUnavailable | StateUnavailable):
        log.warning("%s: %s", type(exc).__name__, exc.detail)
    if _openai_dialect():
        return _openai_response(exc.status, openai_error_body(exc), exc.headers)
    if _ollama_dialect():
        body = ollama_error_body(exc)
        return json_response(ollama_status(exc.status), body, exc.headers)
    return error_response(exc.status, exc.detail, exc.headers)


def _http_error(exc: HTTPException) -> Response:
    headers = {key: value for key, value in exc.get_headers() if key.lower() == "allow"}
    detail = exc.description
    status = exc.code or 500
    if status == 429:
        # Flask-Limiter describes only the limit; its headers say when to retry.
        detail = f"rate limit exceeded ({detail}); retry after Retry-After seconds"
    if _openai_dialect():
        kind, code = OpenAIType.INVALID_REQUEST, None
        if status == 429:
            kind, code = OpenAIType.RATE_LIMIT, OpenAICode.RATE_LIMIT_EXCEEDED
        elif status == 404:
            detail = f"Invalid URL ({request.method} {request.path})"
        body = openai_error_body(message=detail, kind=kind, code=code)
        return _openai_response(status, body, headers)
    if _ollama_dialect():
        if status == 404:
            detail = "404 page not found"  # what Ollama's router answers
        return json_response(ollama_status(status), {"error": str(detail)}, headers)
    return error_response(status, detail, headers)


def _unexpected_error(exc: Exception) -> Response:
    log.exception("unexpected error")
    if _openai_dialect():
        return _openai_response(500, openai_error_body(message="internal server error"))
    if _ollama_dialect():
        return json_response(500, {"error": "internal server error"})
    return error_response(500, "internal server error")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(PiagentError, _piagent_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
